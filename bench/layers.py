#!/usr/bin/env python3
"""The layered benchmark: where a page view's time goes, one layer at a time, each at one client
(c=1: latency) and 16 (c=16: throughput), with the server's CPU per request from /proc.

  instantiate  a fresh instance of each component, dropped at once (visits-runner
               --bench-instantiate: the pooling allocator as when serving; no request)
  handler      the smallest spin-sdk handler (tests/fixtures/hello): the floor of one hop
  handler      the same component under `wasmtime serve` (same wasmtime version), when
               target/tools/bin/wasmtime exists (`make bench-tools`): the anchor for the runner
  chain        a handler calling a second component by service chaining (misbehave /chain)
  page-*       the full page (spin.toml, GET /) per backend; native serves the same pages
  coldstart    exec -> first 200 on /, compile cache warm (median of --coldstarts runs)

Load comes from wrk with bench/wrk-json.lua (wrk's own JSON report). --compare BIN adds the same
rows for another visits-runner binary, run interleaved with the first (an A/B in one run).

Writes bench/results/layers.csv, layers.svg (matplotlib) and the table between the
`layers:begin/end` markers in README.md. Needs wrk, redis-server, nx-27017 (scripts/setup.sh).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from coldstart import NATIVE, ROOT, RUNNER, first_200, free_port, write_csv

TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")
RESULTS = os.path.join(ROOT, "bench/results")
MISBEHAVE = os.path.join(ROOT, "tests/fixtures/misbehave/spin.toml")
HELLO = os.path.join(ROOT, "tests/fixtures/hello/spin.toml")
HELLO_WASM = os.path.join(ROOT, "target/wasm32-wasip2/wasm/hello.wasm")
WASMTIME = os.path.join(ROOT, "target/tools/bin/wasmtime")
SPIN_TOML = os.path.join(ROOT, "spin.toml")


def layers(redis_port, mongo_port):
    """(layer, manifest or None for native-only, path, settings); native runs the page layers."""
    redis = {"counter_backend": "redis", "redis_address": f"127.0.0.1:{redis_port}"}
    return [
        ("handler", HELLO, "/", {}),
        ("chain", MISBEHAVE, "/chain", {"secret_token": "x"}),
        ("page-redis", SPIN_TOML, "/", {**redis, "records_backend": "off"}),
        ("page-embedded", SPIN_TOML, "/", {"records_backend": "off"}),
        ("page-redis-mongodb", SPIN_TOML, "/",
         {**redis, "records_backend": "mongodb", "mongo_address": f"127.0.0.1:{mongo_port}"}),
    ]


class Server:
    def __init__(self, kind, binary, manifest, settings, cache):
        self.port = free_port()
        self.state = tempfile.mkdtemp(prefix="layers-state-")
        if kind == "native":
            env = dict(os.environ, LISTEN_ADDRESS=f"127.0.0.1:{self.port}", QUIET="1")
            env.update({k.upper(): v for k, v in settings.items()})
            cmd = [binary]
        elif kind == "wasmtime":
            # wasi:cli for the std of a wasip2 component; pooling allocator, as the runner's.
            env = dict(os.environ)
            cmd = [binary, "serve", "--addr", f"127.0.0.1:{self.port}", "-Scli",
                   "-Opooling-allocator", manifest]
        else:
            env = dict(os.environ)
            cmd = [binary, "up", "--quiet", "--listen", f"127.0.0.1:{self.port}", "-f", manifest,
                   "--state-dir", self.state, "--cache-dir", cache]
            for k, v in settings.items():
                cmd += ["--variable", f"{k}={v}"]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        # Readiness on /: every layer's app answers it (the fixture's /... route included).
        if not first_200(self.port, time.perf_counter() + 120):
            self.stop()
            raise SystemExit(f"{' '.join(cmd)} did not start")
        self.started_ms = (time.perf_counter() - self.t0) * 1e3

    def cpu_ms(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * TICK_MS  # utime + stime

    def rss_mib(self, field="VmRSS"):
        """Resident memory; field "RssAnon" leaves out file pages (the executable's code, which
        the page cache shares with every other process running the same binary)."""
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.state, ignore_errors=True)


def wrk(port, path, seconds, conns):
    threads = 1 if conns == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "-s",
         os.path.join(ROOT, "bench/wrk-json.lua"), f"http://127.0.0.1:{port}{path}"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(server, path, seconds, conns):
    wrk(server.port, path, 1, conns)  # warm-up: code paths, pools, page cache
    cpu0 = server.cpu_ms()
    r = wrk(server.port, path, seconds, conns)
    cpu = server.cpu_ms() - cpu0
    n = max(r["requests"], 1)
    errors = sum(r["errors"].values())
    return {
        "rps": round(n / (r["duration_us"] / 1e6)),
        "p50_ms": r["latency_us"]["p50"] / 1e3,
        "p99_ms": r["latency_us"]["p99"] / 1e3,
        "cpu_us_per_req": round(cpu * 1e3 / n, 1),
        "errors": errors,
        # wrk's kinds: connect, read, write, status (not 2xx/3xx), timeout (no answer in 2 s).
        "error_kinds": " ".join(f"{k}={v}" for k, v in sorted(r["errors"].items()) if v),
        "rss_mib": round(server.rss_mib(), 1),
        "rss_anon_mib": round(server.rss_mib("RssAnon"), 1),
    }


def instantiate(label, binary, cache, n):
    """Rows of layer "instantiate": one per component of spin.toml and of the hello fixture."""
    rows = []
    for manifest in (SPIN_TOML, HELLO):
        state = tempfile.mkdtemp(prefix="layers-state-")
        out = subprocess.run([binary, "up", "-f", manifest, "--listen", "127.0.0.1:0",
                              "--state-dir", state, "--cache-dir", cache,
                              "--bench-instantiate", str(n)],
                             check=True, capture_output=True, text=True).stdout
        shutil.rmtree(state, ignore_errors=True)
        for line in out.splitlines():
            _, comp, wall, cpu = line.split()
            wall_us, cpu_us = float(wall.split("=")[1]), float(cpu.split("=")[1])
            rows.append({"layer": f"instantiate-{comp}", "server": label, "conns": 1,
                         "rps": round(1e6 / wall_us), "p50_ms": round(wall_us / 1e3, 4),
                         "p99_ms": 0, "cpu_us_per_req": cpu_us, "errors": 0, "error_kinds": "",
                         "rss_mib": 0, "rss_anon_mib": 0})
            print(f"{'instantiate-' + comp:>18} {label:>9}  {wall_us:7.1f} µs wall  "
                  f"{cpu_us:7.1f} µs CPU per instantiate + drop", flush=True)
    return rows


def coldstart(kind, binary, cache, runs):
    """Median exec -> first 200 on / of the page app (redis-free: embedded backends)."""
    Server(kind, binary, SPIN_TOML, {"records_backend": "off"}, cache).stop()  # fills the cache
    times = []
    for _ in range(runs):
        s = Server(kind, binary, SPIN_TOML, {"records_backend": "off"}, cache)
        times.append(s.started_ms)
        s.stop()
    return round(statistics.median(times), 2)


def table(rows):
    head = ("| layer | server | c | req/s | p50 ms | p99 ms | CPU µs/req | RSS MiB (anon) | errors |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['layer']} | {r['server']} | {r['conns']} | {r['rps']:,} | {r['p50_ms']:.3f} | "
        f"{r['p99_ms']:.3f} | {r['cpu_us_per_req']} | {r['rss_mib']} ({r.get('rss_anon_mib', '-')}) | "
        f"{r['errors']} "
        f"{'(' + r['error_kinds'] + ')' if r.get('error_kinds') else ''}|\n"
        for r in rows)
    return head + body


def update_readme(md, command):
    path = os.path.join(ROOT, "README.md")
    text = open(path).read()
    begin, end = "<!-- layers:begin -->", "<!-- layers:end -->"
    if begin not in text or end not in text:
        return
    a, b = text.index(begin) + len(begin), text.index(end)
    machine = open(os.path.join(RESULTS, "machine.txt")).read().strip() if os.path.exists(
        os.path.join(RESULTS, "machine.txt")) else ""
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    block = f"\n`{command}` ({stamp}; {machine.splitlines()[1] if machine else ''}):\n\n{md}\n"
    open(path, "w").write(text[:a] + block + text[b:])


def plot(rows, path):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    matplotlib.rcParams["svg.hashsalt"] = "layers"
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.4 * len({(r["layer"], r["server"]) for r in rows}) + 1.5))
    labels = []
    for r in rows:
        key = (r["layer"], r["server"])
        if key not in labels:
            labels.append(key)
    names = [f"{layer} · {server}" for layer, server in labels]
    colors = ["#2a7ab0" if s == "native" else "#6b4fbb" if s == "runner" else "#c0792a"
              for _, s in labels]

    def values(conns, field):
        # Layers measured at one client only (instantiate) show that figure in every panel.
        by = {(r["layer"], r["server"]): r[field] for r in rows if r["conns"] == 1}
        by.update({(r["layer"], r["server"]): r[field] for r in rows if r["conns"] == conns})
        return [by.get(k, 0) for k in labels]

    def fmt(v):
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    for ax, (title, conns, field) in zip(axes, [
            ("req/s, 16 clients (instantiate: 1)", 16, "rps"),
            ("p50 latency (ms), 1 client", 1, "p50_ms"),
            ("server CPU per request (µs), 16 clients (instantiate: 1)", 16, "cpu_us_per_req")]):
        vals = values(conns, field)
        ax.barh(range(len(vals)), vals, color=colors)
        ax.set_yticks(range(len(vals)), names if ax is axes[0] else [""] * len(vals))
        ax.invert_yaxis()
        ax.set_title(title, fontsize=11)
        ax.grid(axis="x", alpha=0.3)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {fmt(v)}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--coldstarts", type=int, default=7)
    ap.add_argument("--instantiations", type=int, default=2000)
    ap.add_argument("--runner", default=RUNNER)
    ap.add_argument("--compare", metavar="BIN", help="another visits-runner, measured interleaved")
    ap.add_argument("--compare-label", default="runner-b")
    ap.add_argument("--only", help="comma-separated layers to run")
    ap.add_argument("--out", default=os.path.join(RESULTS, "layers.csv"))
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="layers-")
    redis_port, mongo_port = free_port(), free_port()
    backends = [
        subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                          "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL),
        subprocess.Popen(["nx-27017", "--db", os.path.join(work, "nx.db"), "--port",
                          str(mongo_port), "--pid-file", os.path.join(work, "nx.pid"),
                          "--log-file", os.path.join(work, "nx.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    cache = os.path.join(work, "cache")
    runners = [("runner", args.runner)] + ([(args.compare_label, args.compare)] if args.compare else [])
    rows = []
    try:
        time.sleep(1)
        if not args.only or "instantiate" in args.only.split(","):
            for label, binary in runners:
                rows += instantiate(label, binary, cache, args.instantiations)
        for layer, manifest, path, settings in layers(redis_port, mongo_port):
            if args.only and layer not in args.only.split(","):
                continue
            servers = [(label, "wasm", binary) for label, binary in runners]
            if layer.startswith("page"):
                servers.append(("native", "native", NATIVE))
            if layer == "handler" and os.path.exists(WASMTIME):
                servers.append(("wasmtime-serve", "wasmtime", WASMTIME))
            for conns in (1, 16):
                for label, kind, binary in servers:
                    target = HELLO_WASM if kind == "wasmtime" else manifest
                    s = Server(kind, binary, target, settings, cache)
                    try:
                        m = measure(s, path, args.seconds, conns)
                    finally:
                        s.stop()
                    row = {"layer": layer, "server": label, "conns": conns, **m}
                    rows.append(row)
                    print(f"{layer:>18} {label:>9} c={conns:<2} {m['rps']:>7,} req/s  "
                          f"p50 {m['p50_ms']:6.3f} ms  p99 {m['p99_ms']:6.3f} ms  "
                          f"CPU {m['cpu_us_per_req']:7.1f} µs/req  RSS {m['rss_mib']:5.1f} MiB "
                          f"(anon {m['rss_anon_mib']:4.1f})  "
                          f"errors {m['errors']} {m['error_kinds']}", flush=True)
        if not args.only or "coldstart" in args.only.split(","):
            for label, kind, binary in [(l, "wasm", b) for l, b in runners] + [("native", "native", NATIVE)]:
                ms = coldstart(kind, binary, cache, args.coldstarts)
                rows.append({"layer": "coldstart", "server": label, "conns": 1, "rps": 0,
                             "p50_ms": ms, "p99_ms": ms, "cpu_us_per_req": 0, "errors": 0,
                             "error_kinds": "", "rss_mib": 0, "rss_anon_mib": 0})
                print(f"{'coldstart':>18} {label:>9}  median {ms} ms (exec -> first 200, cache warm)")
    finally:
        for b in backends:
            b.terminate()
        shutil.rmtree(work, ignore_errors=True)

    write_csv(args.out, rows)
    measured = [r for r in rows if r["layer"] != "coldstart"]
    if measured:
        plot(measured, os.path.splitext(args.out)[0] + ".svg")
    if not args.no_readme and not args.only and not args.compare:
        update_readme(table(rows), "make bench-layers")
    print(table(rows))


if __name__ == "__main__":
    main()
