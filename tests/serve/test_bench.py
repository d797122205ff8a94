"""``kgzsl benchmark serve`` on the tiny run, briefly: a real server in a child process and real clients."""

from __future__ import annotations

import json

import pytest

from serve_helpers import LABELS

from kgzsl.errors import InputError
from kgzsl.serve.bench import benchmark_serve, format_serve_benchmark

pytestmark = pytest.mark.slow


def test_a_short_serve_benchmark(tiny_run):
    result = benchmark_serve(tiny_run, clients=2, seconds=2.0, labels=LABELS, device="cpu", warmup=0.5, rounds=2)
    json.dumps(result)
    server, inproc = result["server"], result["in_process"]
    assert server["errors"] == inproc["errors"] == 0 and server["count"] > 0 and inproc["count"] > 0
    assert server["per_s"] > 0 and result["same_top_labels"] is True
    assert server["latency_ms"]["p50"] <= server["latency_ms"]["p95"] <= server["latency_ms"]["p99"]
    assert server["rss_mib_before"] > 100 and server["rss_mib_after"] > 100  # torch and a backbone are loaded
    assert len(result["overhead_per_round"]) == 2 and min(result["overhead_per_round"]) <= result["overhead"] <= \
        max(result["overhead_per_round"])
    text = format_serve_benchmark(result)
    assert "kgzsl serve" in text and "in-process predict" in text and "serving overhead" in text


def test_bad_settings_are_refused(tiny_run):
    for bad in ({"clients": 0}, {"seconds": 0}, {"rounds": 0}):
        with pytest.raises(InputError, match="positive"):
            benchmark_serve(tiny_run, **bad)
