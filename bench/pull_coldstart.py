#!/usr/bin/env python3
"""The image layer of cold start: pull from a local registry + start + first 200 on `/`, both
editions, every run with empty caches. Writes bench/results/pull_coldstart.csv.

  wasm    visits-runner registry pull <registry>/wasm-visits@<digest> into an empty cache, then
          visits-runner up -f <same reference> (blobs cached, compile cache empty: the
          components are compiled) until the first 200.
  native  skopeo copy docker://<registry>/wasm-visits-native@<digest> to an empty OCI layout,
          unpack its layer to a root filesystem, exec its entrypoint until the first 200.

Included: registry round trips over loopback (docker-registry, plain HTTP), digest checks,
writing blobs, unpacking, process start, first request. NOT included (no container runtime and
no containerd-shim-spin here): containerd's snapshotter, cgroups/namespaces, pod sandbox,
kubelet, and the shim's own precompilation; the network between a node and a real registry.
Needs `make images build` (make bench-pull does it)."""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "images"))
import imagelib as il  # noqa: E402
from coldstart import write_csv  # noqa: E402


def ms(t: float) -> float:
    return round(t * 1e3, 1)


def wasm_run(reg, digest, tmp) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"))
    ref = f"{reg.host}/wasm-visits@{digest}"
    t0 = time.monotonic()
    il.run([str(il.RUNNER), "registry", "pull", "--insecure", ref], env=env)
    pulled = time.monotonic()
    port = il.free_port()
    app = subprocess.Popen([str(il.RUNNER), "up", "--insecure", "-q", "-f", ref,
                            "--listen", f"127.0.0.1:{port}"], env=env, stderr=subprocess.DEVNULL)
    try:
        il.wait_first_200(f"http://127.0.0.1:{port}/", app)
        done = time.monotonic()
    finally:
        il.stop(app)
    size = sum(p.stat().st_size for p in (tmp / "cache").rglob("blobs/sha256/*"))
    return {"pull_ms": ms(pulled - t0), "unpack_ms": 0.0, "start_to_200_ms": ms(done - pulled),
            "total_ms": ms(done - t0), "bytes_pulled": size}


def native_run(reg, digest, tmp) -> dict:
    t0 = time.monotonic()
    il.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{reg.host}/wasm-visits-native@{digest}", f"oci:{tmp / 'oci'}:pulled"])
    pulled = time.monotonic()
    manifest, config, layers = il.layout_image(tmp / "oci", "pulled")
    il.unpack(layers, tmp / "rootfs")
    unpacked = time.monotonic()
    cfg = config["config"]
    env = dict(e.split("=", 1) for e in cfg.get("Env", []))
    port = il.free_port()
    env.update(LISTEN_ADDRESS=f"127.0.0.1:{port}", QUIET="1")
    entry = [str(tmp / "rootfs" / cfg["Entrypoint"][0].lstrip("/")), *cfg["Entrypoint"][1:]]
    uid, gid = (int(x) for x in cfg["User"].split(":"))
    as_user = {"user": uid, "group": gid, "extra_groups": []} if os.geteuid() == 0 else {}
    app = subprocess.Popen(entry, env=env, stderr=subprocess.DEVNULL, **as_user)
    try:
        il.wait_first_200(f"http://127.0.0.1:{port}/", app)
        done = time.monotonic()
    finally:
        il.stop(app)
    size = sum(l["size"] for l in manifest["layers"]) + manifest["config"]["size"]
    return {"pull_ms": ms(pulled - t0), "unpack_ms": ms(unpacked - pulled),
            "start_to_200_ms": ms(done - unpacked), "total_ms": ms(done - t0), "bytes_pulled": size}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "pull_coldstart.csv"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pull-bench-") as d, il.Registry(pathlib.Path(d)) as reg:
        wasm_digest = il.push_wasm(reg, "bench")
        native_digest = il.push_native(reg, "bench")
        for i in range(args.runs):
            for edition, fn, digest in (("wasm", wasm_run, wasm_digest),
                                        ("native", native_run, native_digest)):
                t = il.runnable_dir(f"{edition}-")  # the native image runs as its own user
                try:
                    rows.append({"edition": edition, "run": i + 1, **fn(reg, digest, t)})
                finally:
                    shutil.rmtree(t)
    write_csv(args.out, rows)
    print(f"pull + start + first 200, empty caches, {args.runs} runs (median ms):")
    print(f"  {'edition':8s} {'pull':>8s} {'unpack':>8s} {'start->200':>11s} {'total':>8s} {'bytes':>11s}")
    for edition in ("wasm", "native"):
        rs = [r for r in rows if r["edition"] == edition]
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
        print(f"  {edition:8s} {med('pull_ms'):8.1f} {med('unpack_ms'):8.1f} "
              f"{med('start_to_200_ms'):11.1f} {med('total_ms'):8.1f} {rs[0]['bytes_pulled']:11,d}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
