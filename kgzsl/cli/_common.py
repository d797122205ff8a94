"""What several ``kgzsl`` subcommands share: logging and quiet mode, printable paths, the prediction table,
extraction options."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from typing import Any, Iterator

__all__ = ["setup_logging", "quiet_third_party", "positive_int", "nonnegative_int", "printable", "format_table",
           "add_extraction_args", "extraction_job"]

# read by huggingface_hub / transformers and tqdm when they are first imported, and by child processes
_QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}


def _own_or_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name == "kgzsl" or record.name.startswith("kgzsl.")


def setup_logging(quiet: bool) -> None:
    """One short stderr line per log record: kgzsl's INFO lines (none under ``-q``), everyone's warnings."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(_own_or_warning)  # third-party INFO lines (model paths, HTTP) are not kgzsl's story
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler])


@contextlib.contextmanager
def quiet_third_party(quiet: bool) -> Iterator[None]:
    """Under ``-q``: no Python warnings (torch's deprecations...) and no third-party progress bars.

    Environment variables set for the block reach libraries imported inside it and child processes;
    libraries already imported (when ``main`` runs in-process) are told directly.
    """
    if not quiet:
        yield
        return
    saved = {k: os.environ.get(k) for k in _QUIET_ENV}
    os.environ.update(_QUIET_ENV)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "huggingface_hub" in sys.modules:
                from huggingface_hub.utils import disable_progress_bars

                disable_progress_bars()
            if "transformers" in sys.modules:
                from transformers.utils.logging import disable_progress_bar

                disable_progress_bar()
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _int_at_least(low: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type of a count option: an integer >= 1 (anything else is a usage error, exit code 2)."""
    return _int_at_least(1, text)


def nonnegative_int(text: str) -> int:
    """argparse type of an option where 0 means none (``--workers``): an integer >= 0."""
    return _int_at_least(0, text)


def label_list(text: str | None, absent: str, option: str = "--labels") -> list[str] | None:
    """The labels of a comma-separated option (None when it was not given).

    Args:
        text: The option's value.
        absent: What leaving the option out does, for the error (``"to rank every class"``).
        option: The option's name.

    Raises:
        InputError: If the option was given but holds no label at all (an empty one inside the list is
            named by its position when the labels are resolved).
    """
    if text is None:
        return None
    labels = [s.strip() for s in text.split(",")]
    if not any(labels):
        from kgzsl.errors import InputError

        raise InputError(f"empty label list: {option} is empty; give labels separated by commas ({option} "
                         f"cat,dog,fox), or leave it out {absent}")
    return labels


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
            node = p["synset"] if p["synset"] == p["wnid"] else f"{p['synset']} ({p['wnid']})"  # own classes: once
            lines.append(f"    {p['score']:7.2%}  {p['label']:<24} {node}")
    return "\n".join(lines)


def add_original_backbone_arg(p: argparse.ArgumentParser) -> None:
    """``--original-backbone``: score with the run's original backbone weights after ``kgzsl finetune``."""
    p.add_argument("--original-backbone", action="store_true", help="after `kgzsl finetune RUN`, use the "
                   "backbone's original weights, not the fine-tuned ones (no effect on a run never fine-tuned)")


def add_extraction_args(p: argparse.ArgumentParser) -> None:
    """The feature-extraction options shared by ``evaluate`` and ``index`` (read by :func:`extraction_job`)."""
    p.add_argument("--device", default="auto", help="under torchrun, 'cuda' means each rank's own GPU")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--workers", type=nonnegative_int, help="image-decoding processes per rank (default: min(4, cores per "
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
