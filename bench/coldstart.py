#!/usr/bin/env python3
"""Cold start: process exec until the first 200 on `/`, for each contender, N runs each.

Prints a table and writes bench/results/coldstart.csv. Standard library only.
"""
import argparse
import csv
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RUNNER = os.path.join(ROOT, "target/dist/visits-runner")  # `make dist` (LTO)
NATIVE = os.path.join(ROOT, "target/dist/visits-native")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_200(port, deadline):
    while time.perf_counter() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return True
        except OSError:
            time.sleep(0.0005)
    return False


def write_csv(path, rows):
    """Writes result rows (dicts with the same keys) as CSV, header first."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def one_run(contender, cache_dir):
    port = free_port()
    state = tempfile.mkdtemp(prefix="coldstart-")
    try:
        if contender == "native":
            cmd = [NATIVE]
            env = dict(os.environ, LISTEN_ADDRESS=f"127.0.0.1:{port}", QUIET="1")
        else:
            cmd = [RUNNER, "up", "--quiet", "--listen", f"127.0.0.1:{port}",
                   "-f", os.path.join(ROOT, "spin.toml"), "--state-dir", state]
            cmd += ["--no-cache"] if contender == "wasm-no-cache" else ["--cache-dir", cache_dir]
            env = dict(os.environ)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = first_200(port, start + 120)
        elapsed = time.perf_counter() - start
        proc.terminate()
        proc.wait(timeout=10)
        if not ok:
            raise SystemExit(f"{contender}: no 200 within 120 s")
        return elapsed * 1000
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/coldstart.csv"))
    args = ap.parse_args()
    cache_dir = tempfile.mkdtemp(prefix="coldstart-cache-")
    one_run("wasm-cached", cache_dir)  # fills the compile cache
    rows = []
    for contender in ["native", "wasm-cached", "wasm-no-cache"]:
        times = [one_run(contender, cache_dir) for _ in range(args.runs)]
        times.sort()
        row = {
            "contender": contender,
            "runs": len(times),
            "median_ms": round(statistics.median(times), 2),
            "min_ms": round(times[0], 2),
            "max_ms": round(times[-1], 2),
        }
        rows.append(row)
        print(f"{contender:>14}: median {row['median_ms']:8.2f} ms  min {row['min_ms']:8.2f}  max {row['max_ms']:8.2f}  ({len(times)} runs)")
    shutil.rmtree(cache_dir, ignore_errors=True)
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
