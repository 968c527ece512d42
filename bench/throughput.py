#!/usr/bin/env python3
"""Requests/s and latency on `/` with wrk (-t2 -c16, 10 s by default), Wasm vs native,
with the embedded backends and with a real redis-server counter.

Writes bench/results/throughput.csv. Needs wrk and redis-server (scripts/setup.sh).
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from coldstart import NATIVE, ROOT, RUNNER, first_200, free_port, write_csv


def start(edition, settings, port, state, cache):
    if edition == "native":
        env = dict(os.environ, LISTEN_ADDRESS=f"127.0.0.1:{port}", QUIET="1")
        env.update({k.upper(): v for k, v in settings.items()})
        cmd = [NATIVE]
    else:
        env = dict(os.environ)
        cmd = [RUNNER, "up", "--quiet", "--listen", f"127.0.0.1:{port}", "-f",
               os.path.join(ROOT, "spin.toml"), "--state-dir", state, "--cache-dir", cache]
        for k, v in settings.items():
            cmd += ["--variable", f"{k}={v}"]
        if edition == "wasm-no-guard-pages":
            cmd.append("--no-guard-pages")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not first_200(port, time.perf_counter() + 120):
        proc.kill()
        raise SystemExit(f"{edition} did not start")
    return proc


def to_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, seconds, connections):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"],
        check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: to_ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return rps, lat["50"], lat["99"], int(errors.group(1)) if errors else 0, socket_errors.group(1) if socket_errors else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/throughput.csv"))
    args = ap.parse_args()

    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    rows = []
    try:
        for backend, settings in [
            ("embedded", {}),
            ("redis", {"counter_backend": "redis", "redis_address": f"127.0.0.1:{redis_port}",
                       "records_backend": "off"}),
        ]:
            for edition in ["native", "wasm", "wasm-no-guard-pages"]:
                state = tempfile.mkdtemp(prefix="bench-state-")
                port = free_port()
                proc = start(edition, settings, port, state, cache)
                try:
                    wrk(port, 2, args.connections)  # warm-up
                    rps, p50, p99, non2xx, sock = wrk(port, args.seconds, args.connections)
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
                    shutil.rmtree(state, ignore_errors=True)
                row = {"edition": edition, "backend": backend, "rps": round(rps), "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                       "non_2xx": non2xx, "socket_errors": sock}
                rows.append(row)
                print(f"{edition:>19} {backend:>8}: {rps:10.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  non-2xx {non2xx} {sock}")
    finally:
        redis.terminate()
        shutil.rmtree(cache, ignore_errors=True)
    write_csv(args.out, rows)


if __name__ == "__main__":
    main()
