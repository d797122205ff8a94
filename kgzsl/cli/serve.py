"""``kgzsl serve RUN``: the HTTP API and page of :mod:`kgzsl.serve`, and ``kgzsl benchmark serve``'s handler.

Heavy imports (torch, FastAPI) happen inside the handlers so that ``kgzsl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kgzsl.cli._common import add_original_backbone_arg, label_list, positive_int

__all__ = ["add_serve_parser", "run_serve_benchmark"]


def _limits(args: argparse.Namespace):
    from kgzsl.serve.inputs import ServeLimits

    return ServeLimits(max_body_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                       max_labels=args.max_labels)


def _cmd_serve(args: argparse.Namespace) -> int:
    from kgzsl.serve.server import serve

    serve(args.run, host=args.host, port=args.port, device=args.device, limits=_limits(args),
          log_level="warning" if args.quiet else "info", shutdown_timeout=args.shutdown_timeout,
          adapt=not args.no_adapt, finetuned=not args.original_backbone, cors_origins=args.cors_origin or ())
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _origin(text: str) -> str:
    """A web origin, ``scheme://host[:port]``, as browsers send it in the ``Origin`` header."""
    from urllib.parse import urlsplit

    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
        raise argparse.ArgumentTypeError(f"{text!r} is not a web origin: give scheme://host[:port], "
                                         "e.g. http://localhost:3000")
    return f"{parts.scheme}://{parts.netloc}"


def _port(text: str) -> int:
    """argparse type of ``--port``: a TCP port (0, "any free port", is refused: the log could not say which)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be an integer in 1..65535, got {text}")
    return value


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """The ``serve`` subcommand."""
    p = sub.add_parser("serve", help="serve a run over HTTP: a JSON API (predict, explain, labels) and a page at /",
                       description="Load a run once and serve it: GET / (the page), GET /health, POST /predict, "
                       "POST /explain (?format=png for the drawing), GET /labels?q=..., GET /openapi.json.")
    p.add_argument("run", help="run folder written by `kgzsl train`")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 1..65535 (default 8000)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-upload-mb", type=_positive_float, default=16.0,
                   help="largest request body in MiB, base64 included (default 16); larger ones get a 413")
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                   help="refuse images whose header claims more pixels (checked before decoding; default 40M)")
    p.add_argument("--max-labels", type=positive_int, default=100, help="most candidate labels per request")
    p.add_argument("--shutdown-timeout", type=_positive_float, default=10.0,
                   help="on Ctrl-C/SIGTERM, most seconds to let requests in progress finish before they are "
                   "cancelled (default 10)")
    p.add_argument("--no-adapt", action="store_true", help="on a calibrated run, do not fit label lists to the "
                   "calibration's images unless a request asks (\"adapt\": true); requests may say either way")
    p.add_argument("--cors-origin", action="append", metavar="ORIGIN", type=_origin,
                   help="let web pages of this origin (e.g. http://localhost:3000) call the API; repeat for "
                   "several. Without it, a POST from a page of another origin is refused (403): a page you visit "
                   "cannot add concepts to the served run")
    add_original_backbone_arg(p)
    p.set_defaults(func=_cmd_serve)


def run_serve_benchmark(args: argparse.Namespace) -> str:
    """``kgzsl benchmark serve [RUN]``: the table (or JSON) of :func:`kgzsl.serve.bench.benchmark_serve`."""
    from kgzsl.serve.bench import benchmark_serve, format_serve_benchmark
    from kgzsl.utils.io import write_json

    run = Path(args.run) if args.run else Path(args.runs_dir) / "dgp"
    labels = label_list(args.labels, "for every class")
    result = benchmark_serve(run, clients=args.clients or 4, seconds=args.seconds or 15, labels=labels,
                             device=args.device)
    if args.json_out:
        write_json(args.json_out, result)
    return json.dumps(result, indent=2) if args.json else format_serve_benchmark(result)
