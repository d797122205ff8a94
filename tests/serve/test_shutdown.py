"""Shutting ``kgzsl serve`` down is bounded: a client stalled mid-upload cannot hold SIGTERM forever."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serve_helpers import tiny_classifier

import uvicorn  # noqa: E402  (after serve_helpers' importorskip)

from kgzsl.cli import build_parser
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.serve import server

pytestmark = pytest.mark.slow

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_shutdown_bound_reaches_uvicorn(tiny_run, monkeypatch):
    args = build_parser().parse_args(["serve", "runs/x"])
    assert args.shutdown_timeout == 10.0
    assert build_parser().parse_args(["serve", "runs/x", "--shutdown-timeout", "0.5"]).shutdown_timeout == 0.5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "runs/x", "--shutdown-timeout", "0"])
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    clf = tiny_classifier(tiny_run)
    monkeypatch.setattr(ZeroShotClassifier, "load", classmethod(lambda cls, run, device, **options: clf))
    server.serve(tiny_run, port=_free_port())
    server.serve(tiny_run, port=_free_port(), shutdown_timeout=2.5)
    assert [call["timeout_graceful_shutdown"] for call in calls] == [10.0, 2.5]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_does_not_wait_for_a_stalled_upload(tiny_run):
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PACKAGE_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kgzsl", "serve", str(tiny_run), "--port", str(port),
                             "--device", "cpu", "--shutdown-timeout", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(PACKAGE_ROOT))
    stalled = None
    try:
        deadline = time.monotonic() + 120
        while stalled is None:
            try:
                stalled = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
        # announces 1 MB, sends 10 bytes, then stalls
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000000\r\n\r\n{\"inputs\":")
        time.sleep(0.3)  # the request is in progress
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # without the bound: waits for the upload forever
        assert time.monotonic() - start < 15, err
    finally:
        proc.kill()
        if stalled is not None:
            stalled.close()
    assert proc.returncode == 143, err
    assert "timeout graceful shutdown exceeded" in err and "Finished server process" in err
    assert err.strip().splitlines()[-1] == "kgzsl serve: interrupted by SIGTERM", err
