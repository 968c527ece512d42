"""Raw HTTP/1.1 over sockets: what attackers send, and a normal client's latency."""
import json
import re
import socket
import threading
import time


def exchange(app, raw, timeout=5.0):
    """Sends `raw`, reads until the server closes (or `timeout`); returns the bytes read."""
    s = app.connect(timeout)
    try:
        s.sendall(raw)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        s.close()


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def statuses(resp):
    """Every status line in a (pipelined) response stream."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", resp)]


def get(app, path="/", headers=None, timeout=5.0):
    """One request on a fresh connection: (status, headers dict, body str, seconds)."""
    hs = {"Host": "localhost", "Connection": "close", **(headers or {})}
    raw = f"GET {path} HTTP/1.1\r\n".encode() + b"".join(
        f"{k}: {v}\r\n".encode("latin-1") for k, v in hs.items()) + b"\r\n"
    t0 = time.monotonic()
    resp = exchange(app, raw, timeout)
    dt = time.monotonic() - t0
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        hdrs[k.decode().strip().lower()] = v.decode("latin-1").strip()
    if hdrs.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return status_of(resp), hdrs, body.decode("utf-8", "replace"), dt


def dechunk(b):
    out = b""
    while b:
        size, _, rest = b.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out += rest[:n]
        b = rest[n + 2:]
    return out


def page_json(app, headers=None):
    status, hdrs, body, _ = get(app, "/", {"Accept": "application/json", **(headers or {})})
    return status, hdrs, (json.loads(body) if status == 200 else None)


def p99_normal_client(app, n=60, path="/"):
    """A normal visitor's latency (fresh connection, GET /) while whatever else runs."""
    times = []
    for _ in range(n):
        status, _, _, dt = get(app, path, {"Accept": "application/json"}, timeout=30)
        assert status == 200, f"normal client got {status}"
        times.append(dt)
    times.sort()
    return times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, times[len(times) // 2] * 1000


def hold(sockets):
    """Keeps sockets open until the returned event is set; closes them then."""
    stop = threading.Event()

    def run():
        stop.wait()
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass
    threading.Thread(target=run, daemon=True).start()
    return stop


def closed_by_server(s, within):
    """True if the server closes `s` (EOF or reset) within `within` seconds."""
    s.settimeout(within)
    try:
        while True:
            b = s.recv(4096)
            if not b:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def report(name, **figures):
    print(f"\n[figure] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
