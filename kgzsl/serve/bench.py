"""``kgzsl benchmark serve``: the server under concurrent clients, beside in-process ``predict`` in the same run.

Two kinds of load, on the bundled photos (:func:`kgzsl.vision.samples.demo_photos`) with the
same candidate labels, each from ``clients`` threads:

- in-process: ``clf.predict(image_bytes, labels)`` in a loop (the encoded photo, decoded by
  ``predict`` as the server decodes an upload);
- served: ``kgzsl serve RUN`` runs in a child process on 127.0.0.1 and the threads post the photos
  to ``/predict`` (JSON, base64) over keep-alive connections, one request at a time each.

After an untimed warm-up of each at full concurrency, they alternate ``rounds`` times for
``seconds / rounds`` each, so both meet whatever load the machine has meanwhile. The serving
overhead is the median over rounds of ``1 - (served requests/s) / (in-process images/s)``: what
HTTP, JSON, base64 and the server's threads cost on top of the same predictions. The server's
resident memory is read after the warm-up and at the end from ``/proc/PID/status`` (Linux; None
elsewhere): its growth is what steady serving adds (a leak grows with the request count).

Example:
    >>> result = benchmark_serve("runs/dgp", clients=4, seconds=15)
    >>> print(format_serve_benchmark(result))
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from kgzsl.errors import InputError, SetupError

__all__ = ["benchmark_serve", "format_serve_benchmark"]

logger = logging.getLogger(__name__)

#: targets on a 2-core CPU (issue 18): no errors, overhead at 4 clients, memory growth per 1,000 requests
TARGETS = {"errors": 0, "overhead": 0.15, "rss_growth_mib_per_1000": 50.0}


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB (Linux /proc), or None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _load(clients: int, seconds: float, call: Callable[[int], bool]) -> tuple[list[float], int, float]:
    """``clients`` threads calling ``call(i)`` until ``seconds`` pass: latencies, errors, elapsed seconds."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def worker(first: int) -> None:
        i = first
        while time.perf_counter() < end:
            start = time.perf_counter()
            ok = call(i)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                errors[0] += not ok
            i += 1

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - start


def _latency_ms(latencies: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000.0
    return {q: round(float(np.percentile(ms, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))} | \
        {"mean": round(float(ms.mean()), 1)}


class _Client:
    """One keep-alive HTTP connection per thread to the server under test."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._local = threading.local()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        conn = getattr(self._local, "conn", None) or http.client.HTTPConnection(self.host, self.port, timeout=120)
        self._local.conn = conn
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            logger.warning("request failed: %s", exc)
            conn.close()
            self._local.conn = None
            return 0, b""


def _start_server(run: Path, host: str, port: int, device: str, log: Any) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "kgzsl", "-q", "serve", str(run), "--host", host, "--port", str(port),
           "--device", device]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SetupError(f"`{' '.join(cmd)}` exited with {server.returncode}: "
                             f"{log.read().decode(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SetupError(f"`{' '.join(cmd)}` did not start listening within 600 s")


def benchmark_serve(run: str | Path, clients: int = 4, seconds: float = 15.0, labels: Sequence[str] | None = None,
                    device: str = "cpu", top_k: int = 5, host: str = "127.0.0.1",
                    warmup: float | None = None, rounds: int = 5) -> dict[str, Any]:
    """Measure ``kgzsl serve RUN`` under ``clients`` concurrent clients against in-process ``predict``.

    Args:
        run: The run folder to serve.
        clients: Concurrent clients (threads), in both phases.
        seconds: Length of each load phase.
        labels: Candidate labels of every request; None scores every class of the graph.
        device: Where the classifier runs, in both phases.
        top_k: Predictions per image.
        host: Interface the server listens on.
        warmup: Seconds of untimed load at full concurrency before timing, per phase (default: a
            quarter of ``seconds``, at most 5).
        rounds: The phases alternate this many times, ``seconds / rounds`` each.

    Returns:
        A JSON-able dict: settings, ``in_process`` and ``server`` (``count`` of images or requests,
        ``errors``, ``per_s``, latency percentiles in ms; the server's RSS before and after and its
        growth per 1,000 requests), ``overhead`` (the median of ``overhead_per_round``),
        ``same_top_labels`` (the server's top label of each photo equals predict's) and ``targets``.

    Raises:
        kgzsl.errors.InputError: If ``clients`` or ``seconds`` is not positive, or no photo is installed.
        kgzsl.errors.SetupError: If the server does not start.
    """
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.vision.samples import demo_photos

    if clients < 1 or seconds <= 0 or rounds < 1:
        raise InputError(f"clients, seconds and rounds must be positive, got {clients}, {seconds} and {rounds}")
    warmup = min(5.0, seconds / 4) if warmup is None else warmup
    photos = [p.read_bytes() for p in demo_photos()]
    if not photos:
        raise InputError("no bundled photo is installed: pip install 'kgzsl[demo]'")
    labels = list(labels) if labels else None
    result: dict[str, Any] = {"run": str(run), "clients": clients, "seconds": seconds, "warmup": warmup,
                              "device": device,
                              "labels": labels or "every class", "photos": len(photos), "cpus": os.cpu_count()}

    clf = ZeroShotClassifier.load(run, device=device)
    result["classes"] = len(clf.wnids)
    expected = [clf.predict(p, labels, top_k=top_k)[0]["label"] for p in photos]

    def predict(i: int) -> bool:
        return bool(clf.predict(photos[i % len(photos)], labels, top_k=top_k))

    port = _free_port(host)
    bodies = [json.dumps({"inputs": base64.b64encode(p).decode("ascii"),
                          "parameters": {"candidate_labels": labels, "top_k": top_k}}).encode() for p in photos]
    phases: dict[str, list[tuple[list[float], int, float]]] = {"in_process": [], "server": []}
    with tempfile.TemporaryFile() as log:
        server = _start_server(Path(run), host, port, device, log)
        try:
            client = _Client(host, port)
            served = []
            for body in bodies:
                status, data = client.post("/predict", body)
                if status != 200:
                    raise SetupError(f"the server answered {status} to a warm-up request: {data[:500]!r}")
                served.append(json.loads(data)[0]["label"])

            def post(i: int) -> bool:
                return client.post("/predict", bodies[i % len(bodies)])[0] == 200

            # warm-up at full concurrency: caches built, and the worker threads with their allocator
            # arenas and torch's per-thread pools exist before the server's memory is first read
            _load(clients, warmup, predict)
            _load(clients, warmup, post)
            rss_before = _rss_mib(server.pid)
            for _ in range(rounds):  # alternating phases share whatever load the machine has meanwhile
                phases["in_process"].append(_load(clients, seconds / rounds, predict))
                phases["server"].append(_load(clients, seconds / rounds, post))
            rss_after = _rss_mib(server.pid)
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    for name, runs in phases.items():
        latencies = [t for lat, _, _ in runs for t in lat]
        result[name] = {"count": len(latencies), "errors": sum(e for _, e, _ in runs),
                        "per_s": round(len(latencies) / sum(t for _, _, t in runs), 2),
                        "latency_ms": _latency_ms(latencies)}
    requests = result["server"]["count"]
    growth = round(rss_after - rss_before, 1) if rss_before is not None and rss_after is not None else None
    result["server"].update({"rss_mib_before": rss_before, "rss_mib_after": rss_after, "rss_growth_mib": growth,
                             "rss_growth_mib_per_1000": round(growth * 1000 / requests, 1)
                             if growth is not None and requests else None})
    per_round = [1 - (len(s[0]) / s[2]) / (len(p[0]) / p[2]) for p, s in zip(phases["in_process"], phases["server"])]
    result["overhead_per_round"] = [round(o, 4) for o in per_round]
    result["overhead"] = round(float(np.median(per_round)), 4)
    result["same_top_labels"] = served == expected
    result["targets"] = TARGETS
    return result


def format_serve_benchmark(result: dict[str, Any]) -> str:
    """A readable summary of :func:`benchmark_serve`'s result."""
    s = result["server"]
    labels = result["labels"] if isinstance(result["labels"], str) else f"{len(result['labels'])} labels"
    rss = "n/a" if s["rss_growth_mib"] is None else \
        f"{s['rss_mib_before']} → {s['rss_mib_after']} MiB ({s['rss_growth_mib']:+} MiB over {s['count']} " \
        f"requests, {s['rss_growth_mib_per_1000']:+} per 1,000; target <= {TARGETS['rss_growth_mib_per_1000']:g})"
    lines = [f"kgzsl benchmark serve — {result['run']} ({result['classes']} classes, {labels}), {result['clients']} "
             f"clients, {result['seconds']} s per kind in {len(result['overhead_per_round'])} rounds, "
             f"{result['photos']} photos, device {result['device']}, {result['cpus']} CPUs",
             f"{'':<20}{'per s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'count':>8}{'errors':>8}"]
    for name, title in (("in_process", "in-process predict"), ("server", "kgzsl serve")):
        r, lat = result[name], result[name]["latency_ms"]
        lines.append(f"{title:<20}{r['per_s']:>8.2f}{lat['p50']:>9.1f}{lat['p95']:>9.1f}{lat['p99']:>9.1f}"
                     f"{r['count']:>8}{r['errors']:>8}")
    lines += [f"serving overhead: {result['overhead']:.1%} (median of rounds "
              f"{', '.join(f'{o:.1%}' for o in result['overhead_per_round'])}; target <= {TARGETS['overhead']:.0%})",
              f"server RSS: {rss}", f"served top labels equal predict's: {result['same_top_labels']}"]
    return "\n".join(lines)
