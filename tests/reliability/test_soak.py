"""The soak (make soak only): 10 minutes of visits mixed with slow clients; RSS must stay flat."""
import time

import pytest

from conftest import LONG
from helpers import report
from test_data import load

SOAK_S = 600


@pytest.mark.skipif(not LONG, reason="long form only (make soak, RELIABILITY_LONG=1)")
def test_rss_is_flat_over_a_long_run(app):
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < SOAK_S:
        counts = load(app, 512, 16)
        assert None not in counts
        # A few abusive connections each round: half-sent heads the server must cut off.
        for _ in range(20):
            s = app.connect()
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            s.close()
        samples.append(app.rss_kib())
    warm = samples[len(samples) // 10]
    last = max(samples[-5:])
    drift = (last - warm) / warm * 100
    report(f"soak {SOAK_S}s [{app.edition}]", rss_warm_kib=warm, rss_end_kib=last,
           drift_pct=round(drift, 1), rounds=len(samples))
    assert drift < 10
