"""Reading a trained run folder for prediction: its files, their checks, and the backbone the rows fit.

A run folder (:mod:`kgzsl.training.run`) holds ``run.json`` (the run's summary), ``rows.safetensors``
(one ``[W | b]`` row per node, with the row scale and backbone name in its header) and
``nodes.tsv``. :func:`read_run` reads and cross-checks them; :func:`run_backbone` loads the
backbone the run was trained for (its fine-tuned weights when there are any) or checks a given one.

Example:
    >>> run = read_run(Path("runs/dgp"))
    >>> backbone = run_backbone(run, device="cpu")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError, KgzslError, NotFoundError
from kgzsl.utils.device import resolve_device
from kgzsl.utils.io import load_tensors, read_tensor_metadata

__all__ = ["RunContents", "RunFormatError", "RunNotFoundError", "read_run", "require_run_file", "requested_wnids", "run_backbone"]

logger = logging.getLogger(__name__)

_RETRAIN = "retrain the run, or copy the complete run folder again"


class RunNotFoundError(NotFoundError):
    """A run folder is missing or incomplete."""


class RunFormatError(InputError):
    """A run folder is corrupt or inconsistent, or does not fit the backbone it is used with."""


@dataclass(frozen=True)
class RunContents:
    """What a run folder holds for prediction.

    Attributes:
        path: The run folder.
        summary: Its ``run.json``.
        rows: ``[N, D + 1]`` predicted unit rows, one per node.
        row_scale: Mean norm of the backbone's own rows.
        wnids: Node ids in row order.
        names: Synset names in row order.
        lemmas: Lemma names per node.
        backbone: Name of the backbone the rows were trained for ("" when the run does not say).
    """

    path: Path
    summary: dict[str, Any]
    rows: torch.Tensor
    row_scale: float
    wnids: list[str]
    names: list[str]
    lemmas: list[list[str]]
    backbone: str


def require_run_file(run_dir: Path, name: str) -> Path:
    """``run_dir / name``, after checking that the run folder holds that file.

    Raises:
        RunNotFoundError: If it does not (the run is incomplete).
    """
    path = run_dir / name
    if not path.is_file():
        raise RunNotFoundError(f"run {run_dir} is incomplete: {name} is missing; {_RETRAIN}")
    return path


def read_run(run_dir: Path) -> RunContents:
    """Read a finished run folder and check that its files agree with each other.

    Raises:
        RunNotFoundError: If the folder is missing or the run did not finish.
        RunFormatError: If its files are corrupt or disagree (row count vs nodes.tsv, backbone).
        kgzsl.utils.io.TensorFileError: If rows.safetensors is not a safetensors file (never unpickled).
    """
    if not run_dir.exists():
        raise RunNotFoundError(f"run folder {run_dir} not found; check the path, or train a run with "
                               "`kgzsl train --config dgp --out RUN`")
    if not (run_dir / "run.json").is_file():
        if (run_dir / "checkpoint.safetensors").is_file():  # a training that was interrupted
            raise RunNotFoundError(f"{run_dir} is not a finished kgzsl run: its training was interrupted (no "
                                   "run.json, a checkpoint); finish it with the same `kgzsl train` command and --resume")
        raise RunNotFoundError(f"{run_dir} is not a finished kgzsl run (no run.json); train one with "
                               "`kgzsl train --config dgp --out RUN`")
    for name in ("rows.safetensors", "nodes.tsv"):
        require_run_file(run_dir, name)
    summary = _read_summary(run_dir / "run.json")
    tensors = load_tensors(run_dir / "rows.safetensors")
    meta = read_tensor_metadata(run_dir / "rows.safetensors")
    wnids, names, lemmas = _read_nodes(run_dir / "nodes.tsv")
    rows = _check_rows(run_dir, summary, tensors, meta, len(wnids))
    try:
        row_scale = float(meta.get("row_scale", 1.0))
    except ValueError:
        raise RunFormatError(f"{run_dir / 'rows.safetensors'}: row_scale {meta['row_scale']!r} is not a number; "
                             f"{_RETRAIN}") from None
    return RunContents(run_dir, summary, rows, row_scale, wnids, names, lemmas,
                       summary.get("backbone") or meta.get("backbone") or "")


def run_backbone(run: RunContents, device: str = "auto", backbone: Any = None, finetuned: bool = True) -> Any:
    """The backbone the run's rows fit: ``backbone`` after checking its name, else the run's own, loaded.

    Args:
        run: The run, from :func:`read_run`.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... (for a backbone loaded here).
        backbone: An already loaded backbone to reuse.
        finetuned: Load the weights fine-tuned under the run's rows (``<run>/finetune/``) when
            there are finished ones; False loads the original weights the rows were trained for.

    Raises:
        RunFormatError: If ``backbone`` is not the one the run was trained for, or the run does not
            say which one it was.
    """
    tuned = None
    if isinstance(backbone, (str, os.PathLike)):  # load(run, backbone="resnet18"): a name, not a backbone
        raise InputError(f"backbone={str(backbone)!r} names a backbone; give a loaded one, "
                         f"kgzsl.load_backbone({str(backbone)!r}, weights=...), or leave it out for the run's own")
    if backbone is None:
        from kgzsl.training.checkpoint import BACKBONE_COPY, finetuned_weights
        from kgzsl.vision.backbones import load_backbone

        cfg = (run.summary.get("config") or {}).get("backbone") or {}
        if not (cfg.get("name") or run.backbone):
            raise RunFormatError(f"{run.path / 'run.json'} does not say which backbone the run was trained for; "
                                 f"{_RETRAIN}")
        tuned = finetuned_weights(run.path) if finetuned else None
        weights = str(tuned[0]) if tuned else cfg.get("weights", "DEFAULT")
        if not tuned and (run.path / BACKBONE_COPY).is_file():  # the run's own copy of a local weights file
            weights = str(run.path / BACKBONE_COPY)
        elif not tuned and _names_a_file(weights) and not os.path.isfile(weights):
            name = cfg.get("name") or run.backbone
            raise RunFormatError(f"run {run.path} was trained on the backbone weights file {weights}, which is not "
                                 "there any more (moved or deleted, or a relative path from another folder); put it "
                                 "back, or load the run in Python with ZeroShotClassifier.load(run, backbone="
                                 f"load_backbone({name!r}, weights=PATH)); runs trained now keep their own copy")
        backbone = load_backbone(cfg.get("name") or run.backbone, weights=weights, device=str(resolve_device(device)))
        if tuned:
            digest = hashlib.sha256(tuned[0].read_bytes()).hexdigest()[:16]
            # the weights' content is part of the name: feature caches and search indexes key on it
            backbone.weights = f"{tuned[0]} (fine-tuned from {tuned[1].get('base_weights')}; sha256 {digest})"
            logger.info("run %s: using the fine-tuned backbone weights %s (finetuned=False for the original)",
                        run.path, tuned[0])
    elif run.backbone and backbone.name != run.backbone:
        raise RunFormatError(f"run {run.path} was trained for backbone {run.backbone!r}, not {backbone.name!r}; "
                             "load it without `backbone=` to use its own, or train a run for "
                             f"{backbone.name!r} (backbone.name={backbone.name})")
    from kgzsl.vision.backbones import same_weights

    recorded = run.summary.get("backbone_weights")
    source = run.summary.get("backbone_weights_source")  # the file a run's copy came from: the same weights
    base = tuned[1].get("base_weights") if tuned else getattr(backbone, "weights", None)
    if recorded and base and not same_weights(recorded, base) and not same_weights(source, base):
        logger.warning("run %s was trained on backbone weights %r but the backbone has %r; predictions are "
                       "only meaningful with the weights the rows were fitted to", run.path, recorded,
                       backbone.weights)
    return backbone


def _names_a_file(weights: Any) -> bool:
    """Whether a recorded ``backbone.weights`` is a file's path (not "DEFAULT", None or a weights name)."""
    return isinstance(weights, str) and (os.sep in weights or weights.endswith((".pth", ".pt", ".safetensors",
                                                                                ".bin")))


def requested_wnids(run_dir: Path) -> frozenset[str] | None:
    """The wnids of the lists the run's graph was built from (the ``sources`` of its ``manifest.json``),
    without the ancestors added to connect them; None when the run does not say (then every node counts)."""
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        from kgzsl.graph.build import resolve_wnids

        sources = json.loads(manifest.read_text(encoding="utf-8")).get("sources") or []
        return frozenset(resolve_wnids([src.get("name") or src["path"] for src in sources])[0]) if sources else None
    except (KgzslError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        logger.info("the classes the graph of %s was built from are unknown (%s): every node counts", run_dir, exc)
        return None


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFormatError(f"{path} is not valid JSON ({exc}); {_RETRAIN}") from None
    if not isinstance(summary, dict):
        raise RunFormatError(f"{path} must hold a JSON object, got {type(summary).__name__}; {_RETRAIN}")
    return summary


def _read_nodes(path: Path) -> tuple[list[str], list[str], list[list[str]]]:
    from kgzsl.graph.graph_folder import GraphFormatError, read_nodes

    try:
        wnids, names, lemmas, _ = read_nodes(path, fix=_RETRAIN)
    except GraphFormatError as exc:  # the graph's own reader; a damaged copy is the run's problem
        raise RunFormatError(str(exc)) from None
    return wnids, names, lemmas


def _check_rows(run_dir: Path, summary: dict[str, Any], tensors: dict[str, torch.Tensor], meta: dict[str, str],
                num_nodes: int) -> torch.Tensor:
    """The run's ``[N, D + 1]`` rows, after checking they agree with nodes.tsv and run.json."""
    rows = tensors.get("rows")
    where = run_dir / "rows.safetensors"
    if rows is None or rows.ndim != 2 or not rows.is_floating_point():
        raise RunFormatError(f"{where} holds no [nodes, features + 1] float 'rows' tensor; {_RETRAIN}")
    if rows.size(0) != num_nodes:
        raise RunFormatError(f"{where} has {rows.size(0)} rows but {run_dir / 'nodes.tsv'} lists {num_nodes} nodes: "
                             f"the files come from different runs or graphs; {_RETRAIN}")
    expected = summary.get("num_nodes")
    if isinstance(expected, int) and expected != num_nodes:
        raise RunFormatError(f"{run_dir / 'run.json'} records {expected} nodes but {run_dir / 'nodes.tsv'} lists "
                             f"{num_nodes}: the files come from different runs or graphs; {_RETRAIN}")
    if meta.get("backbone") and summary.get("backbone") and meta["backbone"] != summary["backbone"]:
        raise RunFormatError(f"{where} was written for backbone {meta['backbone']!r} but {run_dir / 'run.json'} "
                             f"names {summary['backbone']!r}; {_RETRAIN}")
    if not torch.isfinite(rows).all():
        raise RunFormatError(f"{where} holds NaN or infinite rows: the file is damaged, or the training diverged; "
                             f"{_RETRAIN} (with a lower train.lr if it diverged)")
    return rows
