"""Helpers shared by tests/images and bench/pull_coldstart.py: a local registry, OCI layouts,
registry HTTP, starting a server and waiting for its first 200."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import socket
import subprocess
import tarfile
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[2]
RUNNER = REPO / "target" / "release" / "visits-runner"
LAYOUTS = REPO / "target" / "images"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """docker-registry serve CONFIG: filesystem storage under root, plain HTTP on loopback."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Registry":
        cfg = self.root / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.host}}}\n")
        self.log = open(self.root / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(cfg)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.root / 'registry.log').read_text()}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not answer /v2/ within 15 s")
            time.sleep(0.05)

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()

    def get(self, path: str, accept: str | None = None) -> tuple[bytes, dict]:
        req = urllib.request.Request(f"http://{self.host}{path}")
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read(), dict(r.headers)

    def manifest(self, repo: str, ref: str) -> tuple[dict, bytes, dict]:
        body, headers = self.get(f"/v2/{repo}/manifests/{ref}", OCI_MANIFEST)
        return json.loads(body), body, headers

    def blob(self, repo: str, digest: str) -> bytes:
        body, _ = self.get(f"/v2/{repo}/blobs/{digest}")
        assert sha256(body) == digest, f"blob {digest} has the wrong content"
        return body


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run(cmd: list[str], env: dict | None = None, timeout: float = 120) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


def push_wasm(reg: Registry, tag: str) -> str:
    out = run([str(RUNNER), "registry", "push", "--insecure", "-f", str(REPO / "spin.toml"),
               f"{reg.host}/wasm-visits:{tag}"])
    digest = out.split("Pushed with digest ", 1)[1].split()[0]
    assert digest.startswith("sha256:"), out
    return digest


def push_native(reg: Registry, tag: str, version: str = "v1") -> str:
    digestfile = LAYOUTS / f"digest-{os.getpid()}"
    try:
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--digestfile", str(digestfile),
             f"oci:{LAYOUTS / 'wasm-visits-native'}:{version}",
             f"docker://{reg.host}/wasm-visits-native:{tag}"])
        return digestfile.read_text().strip()
    finally:
        digestfile.unlink(missing_ok=True)


def layout_image(layout: pathlib.Path, tag: str) -> tuple[dict, dict, list[pathlib.Path]]:
    """(manifest, config, layer blob paths) of one tag of an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    blob = lambda d: layout / "blobs" / d["digest"].replace(":", "/")  # noqa: E731
    manifest = json.loads(blob(desc).read_text())
    config = json.loads(blob(manifest["config"]).read_text())
    return manifest, config, [blob(l) for l in manifest["layers"]]


def unpack(layers: list[pathlib.Path], rootfs: pathlib.Path) -> None:
    """Apply image layers in order (whiteouts are not needed: FROM scratch, one layer).
    rootfs and its parents must be reachable by the image's (non-root) user."""
    rootfs.mkdir(parents=True, exist_ok=True)
    rootfs.chmod(0o755)
    for layer in layers:
        with tarfile.open(layer) as t:
            t.extractall(rootfs, filter="tar")


def runnable_dir(prefix: str) -> pathlib.Path:
    """A fresh directory any user may enter (pytest's and mkdtemp's are 0700)."""
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def layer_files(layers: list[pathlib.Path]) -> dict[str, tarfile.TarInfo]:
    files = {}
    for layer in layers:
        with tarfile.open(layer) as t:
            for m in t.getmembers():
                if m.isfile():
                    files["/" + m.name.lstrip("./")] = m
    return files


def wait_first_200(url: str, proc: subprocess.Popen, timeout: float = 60) -> tuple[float, bytes]:
    """Poll url until it answers 200: (seconds since the call, body)."""
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0, r.read()
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"no 200 from {url} within {timeout} s")
        time.sleep(0.002)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
