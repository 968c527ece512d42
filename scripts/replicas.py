#!/usr/bin/env python3
"""N replicas of wasm-visits behind nginx, with one Redis, one MongoDB wire-protocol server
(nx-27017) and a Prometheus scraping every replica: `make replicas` (N=, EDITION=native).

Every address comes from ops/local/topology.toml. Everything runs on loopback as children of
this process, with its config, pid, logs and data in one run directory (no system config, no
system service); Ctrl-C or SIGTERM stops it all. scripts/drill.py drives the same Cluster.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPOLOGY = os.path.join(ROOT, "ops", "local", "topology.toml")
ALERTS = os.path.join(ROOT, "monitoring", "alerts.yml")


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Topology:
    """ops/local/topology.toml, the one place that names the local addresses."""

    def __init__(self, path=TOPOLOGY, replicas=None):
        with open(path, "rb") as f:
            t = tomllib.load(f)
        self.nginx = t["nginx"]["listen"]
        self.count = replicas or t["replicas"]["count"]
        self.first_port = t["replicas"]["first_port"]
        self.first_admin_port = t["replicas"]["first_admin_port"]
        self.hostname_prefix = t["replicas"]["hostname_prefix"]
        self.redis = t["redis"]["listen"]
        self.mongodb = t["mongodb"]["listen"]
        self.prometheus = t["prometheus"]["listen"]
        self.host = split_addr(self.nginx)[0]

    def replica_addr(self, i):
        return f"{self.host}:{self.first_port + i - 1}"

    def admin_addr(self, i):
        return f"{self.host}:{self.first_admin_port + i - 1}"

    def hostname(self, i):
        return f"{self.hostname_prefix}{i}"

    def addresses(self):
        yield "nginx", self.nginx
        yield "redis", self.redis
        yield "mongodb", self.mongodb
        yield "prometheus", self.prometheus
        for i in range(1, self.count + 1):
            yield self.hostname(i), self.replica_addr(i)


def port_open(addr, timeout=0.2):
    try:
        with socket.create_connection(split_addr(addr), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url, timeout=2.0, headers=None):
    """(status, headers, body) of one GET; status 0 when nothing answered."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except (OSError, http.client.HTTPException) as e:
        return 0, {}, str(e).encode()


class Proc:
    """A child process with its output in a log file of the run directory."""

    def __init__(self, name, argv, log, env=None):
        self.name, self.argv, self.log = name, argv, log
        out = open(log, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  env=env, start_new_session=True)
        out.close()

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL if it does not finish in time; returns the exit code."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"replicas: {self.name} ignored SIGTERM for {timeout} s; killing it",
                      file=sys.stderr)
                self.p.kill()
        return self.p.wait()

    def tail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def wait_until(what, check, timeout, proc=None, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what}: {proc.name} exited ({proc.p.returncode}); its log:\n"
                               f"{proc.tail()}")
        time.sleep(interval)
    extra = f"; its log:\n{proc.tail()}" if proc is not None else ""
    raise RuntimeError(f"{what}: not ready within {timeout} s{extra}")


class Cluster:
    def __init__(self, edition="wasm", replicas=None, run_dir=None, scrape_interval="5s",
                 version="v1"):
        if edition not in ("wasm", "native"):
            raise ValueError(f"EDITION must be wasm or native, not {edition!r}")
        self.edition = edition
        self.topo = Topology(replicas=replicas)
        if self.topo.count < 1:
            raise ValueError("N must be at least 1")
        self.own_run_dir = run_dir is None
        self.run = run_dir or tempfile.mkdtemp(prefix="visits-replicas-")
        os.makedirs(self.run, exist_ok=True)
        self.scrape_interval = scrape_interval
        self.version = version
        self.replicas = {}        # i -> Proc
        self.versions = {}        # i -> version it runs
        self.drained = set()      # replicas marked down in nginx
        self.nginx = self.redis = self.mongo = self.prometheus = None
        self.binary = os.path.join(ROOT, "target", "release",
                                   "visits-runner" if edition == "wasm" else "visits-native")

    # ------------------------------------------------------------------ start
    def start(self):
        missing = [b for b in ("nginx", "prometheus", "redis-server", "nx-27017")
                   if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
        if missing:
            raise RuntimeError(f"missing {', '.join(missing)}: run scripts/setup.sh")
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"{self.binary} not found: run `make build`")
        busy = [f"{name} ({addr})" for name, addr in self.topo.addresses() if port_open(addr)]
        if busy:
            raise RuntimeError("already in use: " + ", ".join(busy) +
                               " (another `make replicas` running?)")
        self.start_redis()
        self.start_mongo()
        for i in range(1, self.topo.count + 1):
            self.start_replica(i, self.version)
        for i in range(1, self.topo.count + 1):
            self.wait_ready(i)
        self.write_nginx_conf()
        self.nginx = Proc("nginx", self.nginx_argv(), self.path("nginx.out"))
        wait_until("nginx", lambda: port_open(self.topo.nginx), 10, self.nginx)
        self.start_prometheus()

    def path(self, *parts):
        return os.path.join(self.run, *parts)

    def start_redis(self):
        # Append-only file, so a Redis that is stopped and started again (the drill) keeps the
        # count: a restart must not reset visits.
        host, port = split_addr(self.topo.redis)
        self.redis = Proc("redis", ["redis-server", "--bind", host, "--port", str(port),
                                    "--dir", self.run, "--save", "", "--appendonly", "yes",
                                    "--appendfsync", "always"], self.path("redis.log"))
        wait_until("redis", lambda: port_open(self.topo.redis), 10, self.redis)

    def start_mongo(self):
        host, port = split_addr(self.topo.mongodb)
        # Its own pid and log files: the defaults in /tmp are shared with any other nx-27017.
        self.mongo = Proc("nx-27017", ["nx-27017", "--db", self.path("nx.db"), "--host", host,
                                       "-p", str(port), "--pid-file", self.path("nx.pid"),
                                       "--log-file", self.path("nx.log")],
                          self.path("nx.out"))
        wait_until("nx-27017", lambda: port_open(self.topo.mongodb), 20, self.mongo)

    def settings(self, i, version):
        return {
            "hostname": self.topo.hostname(i),
            "version": version,
            "counter_backend": "redis",
            "redis_address": self.topo.redis,
            "records_backend": "mongodb",
            "mongo_address": self.topo.mongodb,
            # Behind nginx: the visitor is the first X-Forwarded-For, not nginx's address.
            "trust_forwarded_for": "true",
        }

    def start_replica(self, i, version):
        settings = self.settings(i, version)
        log = self.path(f"{self.topo.hostname(i)}.log")
        if self.edition == "wasm":
            argv = [self.binary, "up", "--from", os.path.join(ROOT, "spin.toml"),
                    "--listen", self.topo.replica_addr(i),
                    "--admin-listen", self.topo.admin_addr(i), "--quiet",
                    "--state-dir", self.path(self.topo.hostname(i)),
                    "--cache-dir", self.path("compile-cache")]
            for k, v in settings.items():
                argv += ["--variable", f"{k}={v}"]
            env = None
        else:
            argv = [self.binary, "--quiet"]
            env = dict(os.environ, LISTEN_ADDRESS=self.topo.replica_addr(i),
                       **{k.upper(): v for k, v in settings.items()})
        self.replicas[i] = Proc(self.topo.hostname(i), argv, log, env)
        self.versions[i] = version

    def ready(self, i):
        status, _, _ = http_get(f"http://{self.topo.replica_addr(i)}/healthz", timeout=1)
        return status == 200

    def wait_ready(self, i, timeout=60):
        wait_until(self.topo.hostname(i), lambda: self.ready(i), timeout, self.replicas[i])

    def metrics_addr(self, i):
        # The runner serves /metrics on its admin listener, the native edition on its app port.
        return self.topo.admin_addr(i) if self.edition == "wasm" else self.topo.replica_addr(i)

    # ------------------------------------------------------------------ nginx
    def write_nginx_conf(self):
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(self.path("nginx-temp", d), exist_ok=True)
        servers = []
        for i in range(1, self.topo.count + 1):
            down = " down" if i in self.drained else ""
            # Passive health checks: one failed attempt takes a replica out for 2 s.
            servers.append(f"        server {self.topo.replica_addr(i)} max_fails=1 "
                           f"fail_timeout=2s{down};")
        temp = self.path("nginx-temp")
        conf = f"""# Generated by scripts/replicas.py from ops/local/topology.toml.
daemon off;
worker_processes 1;
pid {self.path('nginx.pid')};
error_log {self.path('nginx-error.log')} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream visits {{
{chr(10).join(servers)}
        keepalive 32;
    }}
    server {{
        listen {self.topo.nginx};
        location / {{
            proxy_pass http://visits;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # nginx is the edge: it sets who the visitor is, replacing whatever the visitor
            # claimed (the replicas trust the first X-Forwarded-For entry).
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Real-IP $remote_addr;
            # A refused, reset, timed-out or overloaded replica: try the next one. nginx only
            # retries idempotent requests (GET) this way, and only before answering the client.
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 1s;
            proxy_read_timeout 10s;
        }}
    }}
}}
"""
        with open(self.path("nginx.conf"), "w") as f:
            f.write(conf)

    def nginx_argv(self, *extra):
        return ["nginx", "-p", self.run, "-c", self.path("nginx.conf"),
                "-e", self.path("nginx-error.log"), *extra]

    def nginx_workers(self):
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.nginx.pid:
                pids.append(int(pid))
        return pids

    def reload_nginx(self, timeout=15):
        """Rewrites the upstream and reloads (`nginx -s reload`); returns once the workers with
        the old configuration have finished their requests and exited."""
        self.write_nginx_conf()
        old = set(self.nginx_workers())
        check = subprocess.run(self.nginx_argv("-t", "-q"), capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected its config: {check.stderr}")
        subprocess.run(self.nginx_argv("-s", "reload"), check=True, capture_output=True)
        wait_until("nginx reload",
                   lambda: not (old & set(self.nginx_workers())) and self.nginx_workers(),
                   timeout, self.nginx)

    def drain(self, i):
        self.drained.add(i)
        self.reload_nginx()

    def undrain(self, i):
        self.drained.discard(i)
        self.reload_nginx()

    # ------------------------------------------------------------------ prometheus
    def start_prometheus(self):
        targets = []
        for i in range(1, self.topo.count + 1):
            targets.append({"targets": [self.metrics_addr(i)],
                            "labels": {"replica": self.topo.hostname(i),
                                       "edition": self.edition}})
        config = {
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval},
            "scrape_configs": [{"job_name": "visits", "static_configs": targets}],
        }
        if os.path.exists(ALERTS):
            config["rule_files"] = [ALERTS]
        # JSON is YAML: no YAML library needed.
        with open(self.path("prometheus.yml"), "w") as f:
            json.dump(config, f, indent=2)
        os.makedirs(self.path("prometheus-data"), exist_ok=True)
        self.prometheus = Proc("prometheus", [
            shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={self.path('prometheus.yml')}",
            f"--storage.tsdb.path={self.path('prometheus-data')}",
            f"--web.listen-address={self.topo.prometheus}",
            "--log.level=warn"], self.path("prometheus.log"))
        wait_until("prometheus",
                   lambda: http_get(f"http://{self.topo.prometheus}/-/ready")[0] == 200,
                   30, self.prometheus)

    def prom_query(self, query):
        """The result vector of an instant query: [(labels, value), ...]."""
        url = (f"http://{self.topo.prometheus}/api/v1/query?" +
               urllib.parse.urlencode({"query": query}))
        status, _, body = http_get(url, timeout=5)
        if status != 200:
            raise RuntimeError(f"prometheus query {query!r}: HTTP {status} {body[:200]!r}")
        data = json.loads(body)["data"]["result"]
        return [(r["metric"], float(r["value"][1])) for r in data]

    # ------------------------------------------------------------------ stop
    def stop(self):
        procs = [self.prometheus, self.nginx, *self.replicas.values(), self.mongo, self.redis]
        for p in procs:
            if p is not None:
                p.stop()
        if os.path.exists(self.path("nx.pid")):
            os.unlink(self.path("nx.pid"))

    def cleanup(self):
        if self.own_run_dir:
            shutil.rmtree(self.run, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--replicas", type=int, default=None,
                    help="number of replicas (default: ops/local/topology.toml)")
    ap.add_argument("--edition", choices=["wasm", "native"], default="wasm")
    ap.add_argument("--run-dir", help="keep configs, logs and data here (default: a temp dir)")
    args = ap.parse_args()
    cluster = Cluster(args.edition, args.replicas, args.run_dir)
    stop = {"now": False}

    def on_signal(sig, _frame):
        stop["now"] = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start()
        t = cluster.topo
        print(f"{t.count} {args.edition} replicas behind nginx: http://{t.nginx}/")
        for i in range(1, t.count + 1):
            print(f"  {t.hostname(i)}: http://{t.replica_addr(i)}/  "
                  f"metrics http://{cluster.metrics_addr(i)}/metrics")
        print(f"  redis {t.redis}, mongodb (nx-27017) {t.mongodb}")
        print(f"  prometheus http://{t.prometheus}/ (job \"visits\")")
        print(f"  run dir {cluster.run}; Ctrl-C stops everything", flush=True)
        while not stop["now"]:
            for name, p in [("nginx", cluster.nginx), ("prometheus", cluster.prometheus)]:
                if not p.alive():
                    raise RuntimeError(f"{name} exited; its log:\n{p.tail()}")
            time.sleep(0.5)
        print("replicas: stopping", flush=True)
        return 0
    except (RuntimeError, ValueError) as e:
        print(f"replicas: {e}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        cluster.cleanup()


if __name__ == "__main__":
    sys.exit(main())
