"""Evaluate a trained run on a folder of labelled images (the ImageNet-21K zero-shot protocol).

The candidates are the split's classes that are nodes of the run's graph (plus, generalized, the
backbone's 1,000 seen classes, with their *predicted* rows). Every image of a candidate class is
scored against every candidate with ``features @ W.T + b`` exactly as
:meth:`ZeroShotClassifier.logits` does, in chunks so that 20,842 classes by millions of images
never materialise at once. Features are cached per class folder (see :mod:`kgzsl.features_cache`),
so the 2-hops classes extracted once are reused by the 3-hops and all splits.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch

from kgzsl.evaluate import DEFAULT_KS, _accuracy_at, _best_gamma, gzsl_thresholds, harmonic_mean, \
    hit_from_ranks, mistake_severity, true_class_ranks
from kgzsl.features_cache import extract_features, image_folder

__all__ = ["evaluate_run", "split_wnids", "format_result"]

logger = logging.getLogger(__name__)


def split_wnids(split: str | os.PathLike) -> list[str]:
    """The wnids of a named split (``2-hops``, ``3-hops``, ``all``) or of a wnid file, de-duplicated."""
    from kgzsl.graph import named_wnid_sets
    from kgzsl.graph.build import read_wnid_list

    named = named_wnid_sets()
    path = named.get(str(split)) or Path(split)
    if not path.is_file():
        raise ValueError(f"split {str(split)!r} is neither a shipped wnid set ({', '.join(named) or 'none found'}) "
                         "nor an existing wnid file")
    return list(dict.fromkeys(read_wnid_list(path)))


@torch.inference_mode()
def _score(feats: torch.Tensor, targets: torch.Tensor, matrix: torch.Tensor, seen_mask: torch.Tensor | None,
           out: dict[str, list[torch.Tensor]], max_elements: int = 1 << 26) -> None:
    """Append ranks, top-1 columns and (with ``seen_mask``) calibration thresholds to ``out``, chunk by chunk."""
    chunk = max(1, max_elements // matrix.size(0))
    w, b = matrix[:, :-1].T, matrix[:, -1]
    for s in range(0, feats.size(0), chunk):
        scores = feats[s:s + chunk].to(matrix.device, matrix.dtype) @ w + b
        t = targets[s:s + chunk].to(matrix.device)
        out["target"].append(t.cpu())
        out["rank"].append(true_class_ranks(scores, t).cpu())
        out["pred"].append(scores.argmax(1).cpu())
        if seen_mask is not None:
            for key, value in zip(("is_seen", "threshold", "gap"), gzsl_thresholds(scores, t, seen_mask)):
                out[key].append(value.cpu())


def _evaluate_folder(backbone: Any, data_dir: str | os.PathLike, candidates: list[str], matrix: torch.Tensor,
                     seen_mask: torch.Tensor | None, cache_dir: Any, progress: bool) -> dict[str, torch.Tensor]:
    """Per-image statistics of a folder, one class at a time (features of a class cached together).

    Only the per-image results are kept, never all features: the all split of ImageNet-21K holds
    millions of images.
    """
    from tqdm.auto import tqdm

    column = {w: c for c, w in enumerate(candidates)}
    by_class: dict[str, list[Path]] = {}
    for path, wnid in image_folder(data_dir, wnids=candidates):
        by_class.setdefault(wnid, []).append(path)
    if not by_class:
        raise ValueError(f"{data_dir} has no images of the {len(candidates)} candidate classes")
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("target", "rank", "pred", "is_seen", "threshold", "gap")}
    failed = 0
    for wnid, paths in tqdm(by_class.items(), unit="class", desc=f"evaluating {Path(data_dir).name}",
                            disable=not progress):
        f, ok = extract_features(backbone, paths, cache_dir=cache_dir, progress=False)
        failed += int((~ok).sum())
        if ok.any():
            _score(f[ok], torch.full((int(ok.sum()),), column[wnid], dtype=torch.long), matrix, seen_mask, out)
    if failed:
        logger.warning("%d images of %s could not be read and are left out", failed, data_dir)
    n = sum(len(p) for p in by_class.values()) - failed
    logger.info("%s: %d images of %d of the %d candidate classes", data_dir, n, len(by_class), len(candidates))
    if n == 0:
        raise ValueError(f"no readable image in {data_dir} for the candidate classes")
    return {k: torch.cat(v) for k, v in out.items() if v}


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike, split: str | os.PathLike = "2-hops",
                 generalized: bool = False, gamma: float | None = None, val_dir: str | os.PathLike | None = None,
                 device: str = "auto", cache_dir: str | os.PathLike | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Hit@k (and generalized accuracy) of a run on an ImageNet-style image folder.

    Args:
        run_dir: Run folder written by ``kgzsl train``.
        data_dir: ``data_dir/<wnid>/<image>``; images of classes that are not candidates are ignored.
        split: ``"2-hops"``, ``"3-hops"``, ``"all"`` or a wnid file: the unseen candidate classes.
        generalized: Also make the backbone's seen classes candidates (their predicted rows) and
            report seen / unseen / harmonic top-1 accuracy after calibrated stacking.
        gamma: Calibrated-stacking constant; if None it is chosen on ``val_dir``, else 0.
        val_dir: Validation image folder (same layout) for choosing ``gamma``; never the test set.
        device: Where to run the backbone and the scoring.
        cache_dir: Feature cache folder (default ``~/.cache/kgzsl/features``).
        progress: Show progress bars.

    Returns:
        ``{"n_images", "n_classes", "hit": {"1", "2", "5", "10", "20"}, "mistake_severity", "split",
        "generalized"}`` plus, generalized, ``"seen_accuracy", "unseen_accuracy", "harmonic_mean",
        "gamma"`` (and a ``"note"`` when gamma defaulted to 0). Accuracies are fractions; a metric
        without images (e.g. no seen-class images) or without mistakes is None.

    Raises:
        ValueError: Unknown split, no candidate class in the graph, or no image of one.
    """
    from kgzsl.classifier import ZeroShotClassifier

    wanted = split_wnids(split)  # a wrong split fails before the backbone loads
    clf = ZeroShotClassifier.load(run_dir, device=device)
    node = {w: i for i, w in enumerate(clf.wnids)}
    candidates = [w for w in wanted if w in node]
    if len(candidates) < len(wanted):
        logger.warning("%d of the %d classes of split %s are not nodes of the run's graph and are left out",
                       len(wanted) - len(candidates), len(wanted), split)
    seen = set(clf.backbone.wnids)
    if generalized:
        chosen = set(candidates)
        extra = [w for w in clf.backbone.wnids if w in node and w not in chosen]
        missing = sum(w not in node for w in clf.backbone.wnids)
        if missing:
            logger.warning("%d of the backbone's %d seen classes are not graph nodes and are not candidates",
                           missing, len(clf.backbone.wnids))
        candidates += extra
    if not candidates:
        raise ValueError(f"none of the {len(wanted)} classes of split {split} is a node of the run's graph")
    columns = torch.tensor([node[w] for w in candidates], device=clf.rows.device)
    matrix = (clf.rows[columns] * clf.row_scale).float()
    seen_mask = torch.tensor([w in seen for w in candidates], device=matrix.device) if generalized else None

    stats = _evaluate_folder(clf.backbone, data_dir, candidates, matrix, seen_mask, cache_dir, progress)
    targets = stats["target"]
    result: dict[str, Any] = {
        "n_images": int(targets.numel()), "n_classes": len(candidates),
        "hit": {str(k): v for k, v in hit_from_ranks(stats["rank"], DEFAULT_KS).items()},
        "mistake_severity": None, "split": str(split), "generalized": bool(generalized)}

    graph_dir = clf.summary.get("graph")
    try:
        from kgzsl.graph import KnowledgeGraph

        graph = KnowledgeGraph.load(graph_dir)
        gnode = torch.tensor([graph.index[w] for w in candidates])
        result["mistake_severity"] = _none_if_nan(mistake_severity(gnode[stats["pred"]], gnode[targets], graph))
    except Exception as exc:  # the rows alone still give every other metric
        logger.warning("mistake severity skipped: cannot use the run's graph %s (%s)", graph_dir, exc)

    if generalized:
        note = None
        if gamma is None and val_dir is not None:
            val = _evaluate_folder(clf.backbone, val_dir, candidates, matrix, seen_mask, cache_dir, progress)
            gamma, val_h = _best_gamma(val["is_seen"], val["threshold"], val["gap"])
            logger.info("gamma %.4f chosen on %s (validation harmonic mean %.4f)", gamma, val_dir, val_h)
        elif gamma is None:
            gamma, note = 0.0, "no gamma and no validation folder given: uncalibrated scores (gamma = 0)"
            logger.warning(note)
        acc = _accuracy_at(stats["is_seen"], stats["threshold"], torch.tensor([float(gamma)]))[0].tolist()
        h = harmonic_mean(acc[0], acc[1])
        result.update(seen_accuracy=_none_if_nan(acc[0]), unseen_accuracy=_none_if_nan(acc[1]),
                      harmonic_mean=_none_if_nan(h), gamma=float(gamma))
        if note:
            result["note"] = note
    return result


def format_result(result: dict) -> str:
    """Readable text table of an :func:`kgzsl.evaluate_run.evaluate_run` result."""
    kind = "generalized, seen classes as candidates too" if result["generalized"] else "unseen classes only"
    lines = [f"split {result['split']} ({kind}): {result['n_images']} images, {result['n_classes']} candidate classes"]
    lines += [f"  hit@{k:<3} {v:7.2%}" for k, v in result["hit"].items()]
    sev = result["mistake_severity"]
    lines.append(f"  mistake severity  {'n/a' if sev is None else f'{sev:.3f} hops to the common ancestor'}")
    if result["generalized"]:
        for key in ("seen_accuracy", "unseen_accuracy", "harmonic_mean"):
            value = result[key]
            lines.append(f"  {key.replace('_', ' '):<16} {'n/a' if value is None else f'{value:7.2%}'}")
        note = f"  ({result['note']})" if "note" in result else ""
        lines.append(f"  gamma            {result['gamma']:.4f}{note}")
    return "\n".join(lines)
