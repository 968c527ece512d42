"""Nothing lost: exact counts under concurrency, backends and the app itself killed mid-load."""
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import LONG, App
from helpers import page_json, report


def visit(app):
    """(count reported by a full 200 page, or None when the counter part was degraded)."""
    try:
        status, hdrs, page = page_json(app)
    except OSError:
        return None
    if status != 200 or "counter" in hdrs.get("x-visits-degraded", ""):
        return None
    return page["visits"]


def load(app, n, workers=64, one=visit):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: one(app), range(n)))


def in_background(app, batch, workers, one=visit):
    """`one(app)` in a loop on another thread until the returned event is set;
    (results, stop, t)."""
    results, stop = [], threading.Event()

    def run():
        while not stop.is_set():
            results.extend(load(app, batch, workers, one))
    t = threading.Thread(target=run)
    t.start()
    return results, stop, t


def test_concurrent_visits_are_exact(edition):
    n = 10000
    app = App(edition, settings={"records_backend": "off"})
    try:
        before = visit(app)
        t0 = time.monotonic()
        counts = load(app, n)
        dt = time.monotonic() - t0
        after = visit(app)
    finally:
        app.stop()
    report(f"{n} visits x64 [{edition}]", req_per_s=round(n / dt), lost=before + n + 1 - after)
    assert None not in counts
    assert after == before + n + 1
    assert sorted(counts) == list(range(before + 1, before + n + 1)), "duplicate or lost counts"


def test_redis_killed_and_restarted_mid_load(edition, redis):
    app = App(edition, settings={"counter_backend": "redis", "redis_address": f"127.0.0.1:{redis.port}",
                                 "records_backend": "off"})
    try:
        results, stop, t = in_background(app, 64, 16)
        time.sleep(1)
        redis.kill()
        time.sleep(1)
        redis.start()
        time.sleep(2)
        stop.set()
        t.join()
        stored = int(redis.cli("GET", "visits") or 0)
    finally:
        app.stop()
    ok = [c for c in results if c is not None]
    lost = sum(1 for c in ok if c > stored)
    report(f"redis kill -9 + restart [{edition}]", pages=len(results), counted=len(ok),
           degraded=len(results) - len(ok), max_reported=max(ok), stored=stored, lost=lost)
    assert ok and lost == 0


def test_mongodb_killed_and_restarted_mid_load(edition, mongo):
    """kill -9 of the MongoDB server mid-load: pages stay 200 (records degraded while it is
    down), the records part comes back by itself, and every page that said its visit was
    recorded left a record (nx-27017 stores on SQLite, so they survive its restart)."""
    app = App(edition, settings={"records_backend": "mongodb",
                                 "mongo_address": f"127.0.0.1:{mongo.port}",
                                 "counter_backend": "embedded"})

    def visit_records(app):
        """(status, whether the page says its visit was recorded), or None."""
        try:
            status, hdrs, page = page_json(app)
        except OSError:
            return None
        return status, "records" not in hdrs.get("x-visits-degraded", "")

    pages, stop, t = in_background(app, 32, 16, visit_records)
    try:
        time.sleep(1)
        mongo.kill()
        time.sleep(1)
        mongo.start()
        time.sleep(2)
        stop.set()
        t.join()
        after = visit_records(app)
        stored = mongo.records()
    finally:
        stop.set()
        app.stop()
    statuses = {p[0] for p in pages if p}
    recorded = sum(1 for p in pages if p and p[1]) + (1 if after and after[1] else 0)
    report(f"mongodb kill -9 + restart [{edition}]", pages=len(pages), recorded=recorded,
           degraded=sum(1 for p in pages if p and not p[1]), stored=stored,
           lost=max(0, recorded - stored))
    assert None not in pages and statuses == {200}, statuses
    assert after == (200, True), "the records part did not come back"
    assert stored >= recorded, f"{recorded - stored} recorded visits are missing"


def test_app_killed_mid_load_keeps_its_counts(edition, redis):
    """kill -9 of the app itself; the Wasm edition's embedded key-value store and SQLite must
    hold every count a 200 reported (WAL, synchronous=NORMAL: durable across a process crash).
    visits-native's embedded counter is process memory, so it runs against Redis here."""
    settings = {} if edition == "wasm" else {"counter_backend": "redis",
                                              "redis_address": f"127.0.0.1:{redis.port}"}
    app = App(edition, settings=settings)
    results, stop, t = in_background(app, 32, 16)
    time.sleep(2)
    app.stop(signal.SIGKILL)
    stop.set()
    t.join()
    app.start()
    try:
        after = visit(app)
        status, _, page = page_json(app)
    finally:
        app.stop()
    ok = [c for c in results if c is not None]
    report(f"app kill -9 [{edition}]", counted=len(ok), max_reported=max(ok), after_restart=after)
    assert after is not None and after > max(ok), "a count a 200 reported was lost"
    assert status == 200 and page["errors"] == {}, page
