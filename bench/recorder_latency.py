#!/usr/bin/env python3
"""The latency the recorder adds to a page view: sequential GET / (1,000 by default) with
records off, embedded (SQLite), and MongoDB (nx-27017 on loopback), for both editions.

Writes bench/results/recorder_latency.csv. Needs nx-27017 (scripts/setup.sh).
"""
import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from coldstart import ROOT, free_port, write_csv
from throughput import start


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def measure(port, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for i in range(n + 50):
        t = time.perf_counter()
        conn.request("GET", "/", headers={"accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or b'"errors":{}' not in body:
            raise SystemExit(f"unexpected reply {resp.status}: {body[:200]!r}")
        if i >= 50:  # warm-up excluded
            times.append((time.perf_counter() - t) * 1000)
    conn.close()
    times.sort()
    return statistics.median(times), percentile(times, 0.99)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/recorder_latency.csv"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="recorder-latency-")
    mongo_port = free_port()
    mongo = subprocess.Popen(["nx-27017", "--db", os.path.join(work, "nx.db"), "--host", "127.0.0.1",
                              "-p", str(mongo_port),
                              # its default pid/log files in /tmp are shared with any other nx-27017
                              "--pid-file", os.path.join(work, "nx.pid"), "--log-file", os.path.join(work, "nx.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = os.path.join(work, "cache")
    rows = []
    try:
        time.sleep(1)
        for edition in ["wasm", "native"]:
            for backend, settings in [
                ("off", {"records_backend": "off"}),
                ("embedded", {}),
                ("mongodb", {"records_backend": "mongodb", "mongo_address": f"127.0.0.1:{mongo_port}",
                             "mongo_collection": f"latency_{edition}"}),
            ]:
                state = tempfile.mkdtemp(dir=work)
                port = free_port()
                proc = start(edition, settings, port, state, cache)
                try:
                    p50, p99 = measure(port, args.requests)
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
                rows.append({"edition": edition, "records": backend, "requests": args.requests,
                             "p50_ms": round(p50, 3), "p99_ms": round(p99, 3)})
                print(f"{edition:>6} records={backend:<8}: p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  ({args.requests} sequential)")
    finally:
        mongo.terminate()
        mongo.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
