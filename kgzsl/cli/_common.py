"""What several ``kgzsl`` subcommands share: printable paths, the prediction table, extraction options."""

from __future__ import annotations

import argparse
import logging
from typing import Any

__all__ = ["printable", "format_table", "add_extraction_args", "extraction_job"]


def printable(text: str) -> str:
    """``text`` with undecodable file-name bytes (surrogate escapes) shown as ``\\udcxx``, never a crash."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def format_table(records: list[dict]) -> str:
    """Readable text table of :meth:`ZeroShotClassifier.predict_detailed` records.

    An abstained image (``"abstained": True``) gets a ``none of these`` line above its predictions.
    """
    lines = []
    for rec in records:
        lines.append(printable(rec["image"]))
        if "error" in rec:
            lines.append(f"    ERROR: {printable(rec['error'])}")
            continue
        if rec.get("abstained"):
            lines.append(f"    {'-':>7}  {'none of these':<24} (best logit {rec['max_logit']:.3f} < "
                         f"{rec['threshold']:.3f})")
        for p in rec["predictions"]:
            lines.append(f"    {p['score']:7.2%}  {p['label']:<24} {p['synset']} ({p['wnid']})")
    return "\n".join(lines)


def add_extraction_args(p: argparse.ArgumentParser) -> None:
    """The feature-extraction options shared by ``evaluate`` and ``index`` (read by :func:`extraction_job`)."""
    p.add_argument("--device", default="auto", help="under torchrun, 'cuda' means each rank's own GPU")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--workers", type=int, help="image-decoding processes per rank (default: min(4, cores per "
                   "rank - 1), 0 = decode in the main process)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="mixed-precision backbone: auto = on CUDA only (CPU stays float32)")


def extraction_job(args: argparse.Namespace) -> tuple[Any, int, str | bool]:
    """Join the torchrun job if any (quieting non-zero ranks); the DataLoader workers and amp setting to use."""
    import os

    from kgzsl.utils.distributed import init_distributed
    from kgzsl.vision.extract import default_num_workers

    ctx = init_distributed(args.device)  # under torchrun: one rank of the job, else a plain process
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    workers = args.workers if args.workers is not None else \
        default_num_workers(int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size)))
    return ctx, workers, {"auto": "auto", "on": True, "off": False}[args.amp]
