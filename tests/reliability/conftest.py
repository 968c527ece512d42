"""Reliability suite: both editions as real processes on loopback, attacked over real sockets.

`RELIABILITY_LONG=1` (make soak) selects the long form: more sockets, more visits, the soak.
Each test prints its figures (pytest -s shows them; make passes -s).
"""
import os
import resource
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("RELIABILITY_LONG") == "1"
# Short limits so the tests see them act; the defaults are 10s/10s/5s.
LIMITS = {"client_header_timeout": "1s", "client_body_timeout": "1s", "keepalive_timeout": "1s"}

# Enough descriptors for the flood tests (10,000 sockets in the long form).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """One edition of the app; `settings` are Spin variable names (upper-cased for native)."""

    def __init__(self, edition, settings=None, limits=None, state=None):
        self.edition = edition
        self.settings = dict(settings or {})
        self.limits = dict(LIMITS if limits is None else limits)
        self.state = state or tempfile.mkdtemp(prefix="rel-state-")
        self.log = []
        self.start()

    def start(self):
        if self.edition == "wasm":
            cmd = [os.environ.get("VISITS_RUNNER_BIN", str(ROOT / "target/release/visits-runner")), "up", "--listen", "127.0.0.1:0",
                   "--quiet", "-f", str(ROOT / "spin.toml"), "--state-dir", self.state,
                   "--cache-dir", str(ROOT / "target/e2e-cache")]
            for k, v in self.settings.items():
                cmd += ["--variable", f"{k}={v}"]
            for k, v in self.limits.items():
                cmd += ["--" + k.replace("_", "-"), v]
            env = dict(os.environ)
        else:
            cmd = [os.environ.get("VISITS_NATIVE_BIN", str(ROOT / "target/release/visits-native"))]
            env = dict(os.environ, LISTEN_ADDRESS="127.0.0.1:0", QUIET="1")
            for k, v in {**self.settings, **self.limits}.items():
                env[k.upper()] = v
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     errors="replace")
        found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.append(line)
                if "listening on http://" in line and not found.is_set():
                    self.addr = line.split("listening on http://")[1].split()[0]
                    found.set()
        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(120):
            self.proc.kill()
            raise RuntimeError(f"{self.edition} did not start:\n{''.join(self.log)}")
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def stop(self, sig=None):
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def connect(self, timeout=5):
        return socket.create_connection((self.host, self.port), timeout=timeout)


@pytest.fixture(params=["wasm", "native"])
def edition(request):
    return request.param


@pytest.fixture
def app(edition):
    a = App(edition)
    yield a
    a.stop()


class Backend:
    """A backend server on a free port with its own files; `command()` says how to start it."""

    prefix = "rel-backend-"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix=self.prefix)
        self.port = free_port()
        self.start()

    def command(self):
        raise NotImplementedError

    def start(self):
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis(Backend):
    """redis-server; appendfsync always, so a kill -9 loses no acknowledged write."""

    prefix = "rel-redis-"

    def command(self):
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--appendonly", "yes", "--appendfsync", "always", "--save", ""]

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()


class Mongo(Backend):
    """nx-27017, a MongoDB wire-protocol server on SQLite."""

    prefix = "rel-mongo-"

    def command(self):
        d = pathlib.Path(self.dir)
        return ["nx-27017", "--db", str(d / "nx.db"), "--host", "127.0.0.1", "--port",
                str(self.port), "--pid-file", str(d / "nx.pid"), "--log-file", str(d / "nx.log")]

    def records(self):
        """Visit records stored (pymongo comes with nx-27017)."""
        import pymongo
        client = pymongo.MongoClient("127.0.0.1", self.port, directConnection=True,
                                     serverSelectionTimeoutMS=5000)
        try:
            return client["visits"]["records"].count_documents({})
        finally:
            client.close()


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.close()


@pytest.fixture
def mongo():
    m = Mongo()
    yield m
    m.close()
