"""A real uvicorn server in a thread: concurrent requests answer what sequential ones do, a slow client
blocks no one, and ``kgzsl serve`` / ``kgzsl benchmark serve`` parse their options."""

from __future__ import annotations

import base64
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from serve_helpers import LABELS, photo, same_predictions, tiny_classifier

import httpx  # noqa: E402  (after serve_helpers' importorskip)

from kgzsl.serve.app import create_app
from kgzsl.serve.server import running_server
from kgzsl.vision.samples import demo_photos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def url(tiny_run):
    with running_server(create_app(tiny_classifier(tiny_run))) as base:
        yield base


def _jobs() -> list[dict]:
    """Different photos and label lists (so that heads are built concurrently too)."""
    photos = [base64.b64encode(p.read_bytes()).decode() for p in demo_photos()[:4]]
    lists = [LABELS, LABELS[:2], ["tabby", "golden retriever", "n02690373"], None]
    return [{"inputs": photos[i % len(photos)], "parameters": {"candidate_labels": lists[i % len(lists)],
                                                                "top_k": 3}} for i in range(16)]


def test_concurrent_requests_equal_sequential_ones(url):
    jobs = _jobs()
    with httpx.Client(base_url=url, timeout=120) as client:
        sequential = [client.post("/predict", json=job).json() for job in jobs]

    def post(job: dict) -> list:
        with httpx.Client(base_url=url, timeout=120) as own:
            return own.post("/predict", json=job).json()

    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(post, jobs * 2))
    assert all(isinstance(r, list) and 2 <= len(r) <= 3 for r in sequential), sequential
    assert len({r[0]["label"] for r in sequential}) > 1  # the jobs differ
    assert all(same_predictions(c, s) for c, s in zip(concurrent, sequential * 2))


def test_a_slow_client_blocks_no_one(url):
    parsed = urlparse(url)
    slow = socket.create_connection((parsed.hostname, parsed.port))
    try:  # announces 1 MB, sends 10 bytes, then stalls
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000\r\n\r\n{\"inputs\":")
        jobs = [{"inputs": base64.b64encode(photo("chelsea.png").read_bytes()).decode(),
                 "parameters": {"candidate_labels": LABELS}}] * 4
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda job: httpx.post(f"{url}/predict", json=job, timeout=60), jobs))
        assert [a.status_code for a in answers] == [200] * 4 and time.perf_counter() - start < 30
        assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"
    finally:
        slow.close()


def test_serve_options_are_checked():
    from kgzsl.cli import build_parser

    args = build_parser().parse_args(["serve", "runs/x", "--port", "9000", "--max-upload-mb", "2.5"])
    assert (args.run, args.host, args.port, args.max_upload_mb, args.max_pixels) == \
        ("runs/x", "127.0.0.1", 9000, 2.5, 40_000_000)
    for bad in (["--port", "0"], ["--max-upload-mb", "0"], ["--max-labels", "x"]):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["serve", "runs/x", *bad])
        assert info.value.code == 2
    args = build_parser().parse_args(["serve", "runs/x", "--cors-origin", "http://localhost:3000/",
                                      "--cors-origin", "https://shop.example"])
    assert args.cors_origin == ["http://localhost:3000", "https://shop.example"]
    for bad in ("localhost:3000", "ftp://x.example", "http://x.example/page"):  # not an origin
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["serve", "runs/x", "--cors-origin", bad])
        assert info.value.code == 2
    args = build_parser().parse_args(["benchmark", "serve", "runs/x", "--clients", "2", "--seconds", "5"])
    assert (args.name, args.run, args.clients, args.seconds) == ("serve", "runs/x", 2, 5)


def test_serve_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    from kgzsl.cli import main

    assert main(["-q", "serve", str(tmp_path / "nothing"), "--device", "cpu"]) == 1
    assert "kgzsl serve: error:" in capsys.readouterr().err


def test_without_the_serve_extra_the_error_names_the_install(monkeypatch, tmp_path, capsys):
    import sys

    from kgzsl.cli import main

    for name in ("kgzsl.serve.server", "kgzsl.serve.app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    assert main(["-q", "serve", str(tmp_path), "--device", "cpu"]) == 1
    assert "pip install 'kgzsl[serve]'" in capsys.readouterr().err
