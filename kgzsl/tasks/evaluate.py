"""Evaluate a trained run on a folder of labelled images (the ImageNet-21K zero-shot protocol).

The candidates are the split's classes that are nodes of the run's graph (plus, generalized, the
backbone's 1,000 seen classes). They are scored as ``predict`` scores them, the backbone's classes
with their real rows (``scoring="predicted"``: every candidate with its predicted row, as the GCNZ
and DGP papers evaluate). Every image of a candidate class is
scored against every candidate by :meth:`ZeroShotClassifier.logits` (the head ``predict`` uses),
in chunks so that 20,842 classes by millions of images never materialise at once. Features are cached per class folder (see :mod:`kgzsl.vision.extract`),
so the 2-hops classes extracted once are reused by the 3-hops and all splits.

Under ``torchrun`` (pass the :class:`~kgzsl.utils.distributed.DistContext`) every rank extracts and
scores a disjoint share of the images and only the per-image ranks, predictions and thresholds are
gathered; the result equals the one-process result on every rank.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError, KgzslError, SetupError
from kgzsl.graph.wordnet import WNID_RE
from kgzsl.tasks.metrics import DEFAULT_KS, _accuracy_at, _best_gamma, gzsl_thresholds, harmonic_mean, \
    hit_from_ranks, mistake_severity, true_class_ranks
from kgzsl.utils.distributed import DistContext, all_ranks_agree, gather_objects, shard_indices
from kgzsl.vision.extract import default_cache_dir, iter_features
from kgzsl.vision.folders import image_folder

__all__ = ["evaluate_run", "split_wnids", "format_result"]

logger = logging.getLogger(__name__)


def split_wnids(split: str | os.PathLike) -> list[str]:
    """The wnids of a named split (``2-hops``, ``3-hops``, ``all``) or of a wnid file, de-duplicated."""
    from kgzsl.graph import named_wnid_sets
    from kgzsl.graph.build import read_wnid_list

    named = named_wnid_sets()
    path = named.get(str(split)) or Path(split)
    if not path.is_file():
        raise InputError(f"split {str(split)!r} is neither a shipped wnid set ({', '.join(named) or 'none found'}) "
                         "nor an existing wnid file")
    return list(dict.fromkeys(read_wnid_list(path)))


@torch.inference_mode()
def _score(feats: torch.Tensor, targets: torch.Tensor, clf: Any, candidates: list[str], seen_mask: torch.Tensor | None,
           out: dict[str, list[torch.Tensor]], max_elements: int = 1 << 26) -> None:
    """Append ranks, top-1 columns and (with ``seen_mask``) calibration thresholds to ``out``, chunk by chunk."""
    chunk = max(1, max_elements // len(candidates))
    for s in range(0, feats.size(0), chunk):
        scores = clf.logits(feats[s:s + chunk].to(clf.rows.device), candidates)
        t = targets[s:s + chunk].to(scores.device)
        out["target"].append(t.cpu())
        out["rank"].append(true_class_ranks(scores, t).cpu())
        out["pred"].append(scores.argmax(1).cpu())
        if seen_mask is not None:
            for key, value in zip(("is_seen", "threshold", "gap"), gzsl_thresholds(scores, t, seen_mask)):
                out[key].append(value.cpu())


def _evaluate_folder(clf: Any, data_dir: str | os.PathLike, candidates: list[str], seen_mask: torch.Tensor | None,
                     cache_dir: Any, progress: bool, ctx: DistContext = DistContext(),
                     extract: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """Per-image statistics of a folder, one class at a time (features of a class cached together).

    Only the per-image results are kept, never all features: the all split of ImageNet-21K holds
    millions of images. Under torchrun each rank takes a strided share of the folder's images
    (every class split across the ranks), extracts and scores its share class by class, and the
    statistics are gathered once, in image order, so every rank returns what one process would.
    """
    from tqdm.auto import tqdm

    column = {w: c for c, w in enumerate(candidates)}
    items = image_folder(data_dir, wnids=candidates)
    if not items:
        raise InputError(f"{data_dir} has no images of the {len(candidates)} candidate classes")
    others = sorted(d.name for d in Path(data_dir).iterdir() if d.is_dir() and WNID_RE.match(d.name)
                    and d.name not in column)
    if others and ctx.is_main:
        logger.info("%d class folders of %s are not candidates of this split and are left out: %s", len(others),
                    data_dir, _some(others))
    unnamed = sorted(d.name for d in Path(data_dir).iterdir() if d.is_dir() and not d.name.startswith(".")
                     and not WNID_RE.fullmatch(d.name))
    if unnamed and ctx.is_main:  # "windmill/", or a wnid with a digit missing: their images would vanish unsaid
        logger.warning("%d sub-folders of %s are not named by a wnid and are left out: %s; name each class folder by "
                       "its wnid (e.g. n02084071 for dog.n.01)", len(unnamed), data_dir, _some(unnamed))
    if not all_ranks_agree(items, ctx):
        raise SetupError(f"the processes listed different images under {data_dir} (did it change?); run again")
    keys = ("index", "target", "rank", "pred") + (("is_seen", "threshold", "gap") if seen_mask is not None else ())
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    groups = [list(g) for _, g in itertools.groupby(shard_indices(len(items), ctx), key=lambda i: items[i][1])]
    failed = 0
    # one DataLoader for the whole share (its workers start once); features are cached per class
    features = iter_features(clf.backbone, [[items[i][0] for i in idx] for idx in groups], cache_dir=cache_dir,
                             progress=False, **(extract or {}))
    for (_, f, ok), idx in zip(tqdm(features, total=len(groups), unit="class",
                                    desc=f"evaluating {Path(data_dir).name}", disable=None if progress else True),
                                 groups):  # None: no bar where stderr is no terminal (a log file)
        failed += int((~ok).sum())
        if ok.any():
            out["index"].append(torch.tensor(idx)[ok])
            _score(f[ok], torch.full((int(ok.sum()),), column[items[idx[0]][1]], dtype=torch.long), clf,
                   candidates, seen_mask, out)
    empty = {"is_seen": torch.bool, "threshold": torch.float64, "gap": torch.float64}  # a rank without images
    stats = {k: torch.cat(v) if v else torch.zeros(0, dtype=empty.get(k, torch.long)) for k, v in out.items()}
    if ctx.distributed:  # the only exchange: small per-image results, never features
        shares = gather_objects((stats, failed), ctx)
        failed = sum(n for _, n in shares)
        stats = {k: torch.cat([s[k] for s, _ in shares]) for k in keys}
        order = stats["index"].argsort()
        stats = {k: v[order] for k, v in stats.items()}
    if failed and ctx.is_main:
        logger.warning("%d images of %s could not be read and are left out", failed, data_dir)
    n = len(items) - failed
    if ctx.is_main:
        logger.info("%s: %d images of %d of the %d candidate classes", data_dir, n,
                    len({w for _, w in items}), len(candidates))
    if n == 0:
        raise InputError(f"no readable image in {data_dir} for the candidate classes")
    return stats


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def _some(wnids: list[str], shown: int = 5) -> str:
    """The first few wnids, then how many more: ``a, b, c, d, e and 5 more``."""
    more = f" and {len(wnids) - shown} more" if len(wnids) > shown else ""
    return ", ".join(wnids[:shown]) + more


def _graph_nodes(clf: Any, candidates: list[str]) -> tuple[Any, torch.Tensor]:
    """The run's own graph and each candidate's node in it, for the mistake severity.

    The graph is the copy in the run folder (``nodes.tsv``, ``edges.tsv``, ``ancestors.tsv``), with the
    concepts added to the run joined to it as the classifier joins them
    (:func:`~kgzsl.inference.concept_state.concept_graph`); never a graph folder outside the run, so a run
    copied anywhere evaluates the same.

    Raises:
        InputError: If the run carries no copy of its graph, or a candidate is not one of its nodes.
    """
    from kgzsl.graph import KnowledgeGraph

    run_dir = Path(clf.run_dir)
    missing = [name for name in ("manifest.json", "edges.tsv") if not (run_dir / name).is_file()]
    if missing:
        raise InputError(f"run {run_dir} carries no copy of its graph ({' and '.join(missing)} missing: trained by "
                         "an older kgzsl); retrain the run to measure how far its mistakes are")
    if clf.added_wnids:  # concepts added to the run: their nodes and edges come with the classifier's state
        from kgzsl.inference.concept_state import concept_graph

        graph = concept_graph(clf).graph
    else:
        graph = KnowledgeGraph.load(run_dir)
    unplaced = [w for w in candidates if w not in graph.index]
    if unplaced:
        raise InputError(f"class {_some(unplaced)} has a row in run {run_dir} but is neither a node of its graph "
                         "(nodes.tsv) nor a concept added to it (concepts.yaml); copy the complete run folder again")
    return graph, torch.tensor([graph.index[w] for w in candidates])


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike, split: str | os.PathLike = "2-hops",
                 generalized: bool = False, gamma: float | None = None, val_dir: str | os.PathLike | None = None,
                 device: str | torch.device = "auto", cache_dir: str | os.PathLike | None = None,
                 progress: bool = True, batch_size: int = 32, num_workers: int = 0, amp: str | bool = "auto",
                 dist_ctx: DistContext | None = None, scoring: str = "auto", finetuned: bool = True) -> dict[str, Any]:
    """Hit@k (and generalized accuracy) of a run on an ImageNet-style image folder.

    Args:
        run_dir: Run folder written by ``kgzsl train``.
        data_dir: ``data_dir/<wnid>/<image>``; images of classes that are not candidates are ignored.
        split: ``"2-hops"``, ``"3-hops"``, ``"all"`` or a wnid file: the unseen candidate classes.
        generalized: Also make the backbone's seen classes candidates and
            report seen / unseen / harmonic top-1 accuracy after calibrated stacking.
        gamma: Calibrated-stacking constant; if None it is chosen on ``val_dir``, else 0. It moves the
            seen / unseen / harmonic accuracies only: hit@k ranks the raw scores.
        val_dir: Validation image folder (same layout) for choosing ``gamma``; never the test set.
        device: Where to run the backbone and the scoring.
        cache_dir: Feature cache folder (default ``~/.cache/kgzsl/features``).
        progress: Show progress bars (on rank 0 only under torchrun).
        batch_size: Images per forward pass of the backbone.
        num_workers: DataLoader processes decoding images, per process.
        amp: Mixed precision of the backbone (:func:`kgzsl.vision.extract.autocast_dtype`):
            ``"auto"`` uses it on CUDA only.
        dist_ctx: The torchrun job (:func:`kgzsl.utils.distributed.init_distributed`); every rank must
            call this with the same arguments and gets the same result. None: one process.
        scoring: How candidates are scored (:meth:`ZeroShotClassifier.load`): ``"auto"`` as
            ``predict`` scores them (the backbone's own rows for its classes), ``"predicted"`` every
            candidate by its predicted row, as the GCNZ and DGP papers evaluate.
        finetuned: After ``kgzsl finetune``, evaluate with the fine-tuned backbone (the default);
            False: with the original weights the rows were trained for.

    Returns:
        ``{"n_images", "n_classes", "hit": {"1", "2", "5", "10", "20"}, "mistake_severity", "split",
        "split_classes", "split_nodes", "generalized", "split_seen", "scoring", "calibrated_on"}``
        (``scoring``: ``"auto"`` or ``"predicted"``, as given; ``calibrated_on``: how many images
        ``kgzsl calibrate`` centred the scores on, None when the run is not calibrated; ``split_classes``:
        how many classes the split names; ``split_nodes``: how many of them are graph nodes, the
        candidates; ``split_seen``: how many of those are the backbone's) plus, generalized, ``"seen_accuracy", "unseen_accuracy", "harmonic_mean",
        "gamma"`` (and a ``"note"`` when gamma defaulted to 0). Accuracies are fractions; a metric
        without images (e.g. no seen-class images) or without mistakes is None.

    Raises:
        ValueError: Unknown split, no candidate class in the graph, or no image of one; ``gamma`` or
            ``val_dir`` without ``generalized``, both at once, or ``val_dir`` the test folder.
    """
    from kgzsl.inference.classifier import ZeroShotClassifier

    ctx = dist_ctx or DistContext()  # warnings every rank would repeat are logged by rank 0 only
    _check_gamma_options(data_dir, generalized, gamma, val_dir)
    wanted = split_wnids(split)  # a wrong split fails before the backbone loads
    clf = ZeroShotClassifier.load(run_dir, device=device, scoring=scoring, finetuned=finetuned)
    node = {w: i for i, w in enumerate(clf.wnids)}
    candidates = [w for w in wanted if w in node]
    if len(candidates) < len(wanted) and ctx.is_main:
        logger.warning("%d of the %d classes of split %s are not nodes of the run's graph and are left out: %s",
                       len(wanted) - len(candidates), len(wanted), split, _some([w for w in wanted if w not in node]))
    seen = set(clf.backbone.wnids)
    split_seen = sum(w in seen for w in candidates)  # a wnid file may list the backbone's own classes too
    split_nodes = len(candidates)
    if generalized:
        chosen = set(candidates)
        extra = [w for w in clf.backbone.wnids if w in node and w not in chosen]
        missing = sum(w not in node for w in clf.backbone.wnids)
        if missing and ctx.is_main:
            logger.warning("%d of the backbone's %d seen classes are not graph nodes and are not candidates",
                           missing, len(clf.backbone.wnids))
        candidates += extra
    if not candidates:
        raise InputError(f"none of the {len(wanted)} classes of split {split} is a node of the run's graph")
    seen_mask = torch.tensor([w in seen for w in candidates], device=clf.rows.device) if generalized else None

    extract = {"batch_size": batch_size, "num_workers": num_workers, "amp": amp}
    progress = progress and ctx.is_main
    if ctx.is_main:  # once, not once per class: the cache is what makes a second evaluation fast
        logger.info("image features are cached under %s%s", Path(cache_dir or default_cache_dir()),
                    "" if cache_dir else " (set KGZSL_CACHE to move the cache)")
    stats = _evaluate_folder(clf, data_dir, candidates, seen_mask, cache_dir, progress, ctx, extract)
    targets = stats["target"]
    result: dict[str, Any] = {
        "n_images": int(targets.numel()), "n_classes": len(candidates),
        "hit": {str(k): v for k, v in hit_from_ranks(stats["rank"], DEFAULT_KS).items()},
        "mistake_severity": None, "split": str(split), "split_classes": len(wanted), "split_nodes": split_nodes,
        "generalized": bool(generalized),
        "split_seen": split_seen, "scoring": "auto" if clf.scoring == "calibrated" else clf.scoring,
        # the papers' scoring reads no calibration: every candidate by its predicted row
        "calibrated_on": None if clf.score_calibration is None or clf.scoring == "predicted" else
        clf.score_calibration.images}

    try:
        graph, gnode = _graph_nodes(clf, candidates)
        result["mistake_severity"] = _none_if_nan(mistake_severity(gnode[stats["pred"]], gnode[targets], graph))
    except (KgzslError, OSError) as exc:  # the rows alone still give every other metric
        if ctx.is_main:
            logger.warning("mistake severity skipped: %s", exc)

    if generalized:
        note = None
        if gamma is None and val_dir is not None:
            val = _evaluate_folder(clf, val_dir, candidates, seen_mask, cache_dir, progress, ctx, extract)
            gamma, val_h = _best_gamma(val["is_seen"], val["threshold"], val["gap"])
            logger.info("gamma %.4f chosen on %s (validation harmonic mean %.4f)", gamma, val_dir, val_h)
        elif gamma is None:
            gamma, note = 0.0, "no gamma and no validation folder given: uncalibrated scores (gamma = 0)"
            if ctx.is_main:
                logger.warning(note)
        acc = _accuracy_at(stats["is_seen"], stats["threshold"], torch.tensor([float(gamma)]))[0].tolist()
        h = harmonic_mean(acc[0], acc[1])
        result.update(seen_accuracy=_none_if_nan(acc[0]), unseen_accuracy=_none_if_nan(acc[1]),
                      harmonic_mean=_none_if_nan(h), gamma=float(gamma))
        if note:
            result["note"] = note
    return result


def _check_gamma_options(data_dir: str | os.PathLike, generalized: bool, gamma: float | None,
                         val_dir: str | os.PathLike | None) -> None:
    """Refuse calibrated-stacking options that would be ignored, or that would choose ``gamma`` on the test images."""
    if not generalized and (gamma is not None or val_dir is not None):
        raise InputError("gamma and val_dir are for generalized=True (seen classes as candidates too)",
                         cli_message="--gamma and --val are for --generalized (seen classes as candidates too); add "
                         "it, or leave them out")
    if gamma is not None and not math.isfinite(gamma):
        raise InputError(f"gamma must be a finite number, got {gamma}", cli_message=f"--gamma must be a finite "
                         f"number, got {gamma}")
    if gamma is not None and val_dir is not None:
        raise InputError("give gamma or val_dir (to choose gamma on), not both",
                         cli_message="give --gamma or --val (to choose gamma on), not both")
    if val_dir is not None and Path(val_dir).resolve() == Path(data_dir).resolve():
        told = (f"{val_dir} is the test folder: gamma chosen on the test images would flatter the result; give a "
                "validation folder of other images")
        raise InputError(f"val_dir {told}", cli_message=f"--val {told}")


def format_result(result: dict) -> str:
    """Readable text table of an :func:`kgzsl.tasks.evaluate.evaluate_run` result."""
    mixed = result.get("split_seen", 0)
    kind = "generalized, seen classes as candidates too" if result["generalized"] else \
        f"its own classes only; {mixed} of them are the backbone's classes" if mixed else "unseen classes only"
    total, nodes = result.get("split_classes"), result.get("split_nodes")
    of = f" ({nodes} of the split's {total} classes are nodes of the run's graph; the others are left out)" \
        if total is not None and nodes is not None and nodes < total else ""
    on = result.get("calibrated_on")
    scoring = "" if not result.get("scoring") else f"; scoring {result['scoring']}, " + (
        "every candidate by its predicted row" if result["scoring"] == "predicted" else "the backbone's own rows "
        "for its classes" + (f", calibrated on {on} images" if on else ", not calibrated on your images"))
    lines = [f"split {result['split']} ({kind}{scoring}): {result['n_images']} images, {result['n_classes']} "
             f"candidate classes{of}"]
    # with as many candidates as k or fewer, hit@k is 100% whatever the scores: said, not shown as a result
    lines += [f"  hit@{k:<3} {v:7.2%}" + (f"  (k >= the {result['n_classes']} candidates: every one is in the top k)"
                                         if int(k) >= result["n_classes"] else "") for k, v in result["hit"].items()]
    if result["generalized"]:
        lines.append("  (hit@k ranks the raw scores; gamma moves the accuracies below)")
    sev = result["mistake_severity"]
    lines.append(f"  mistake severity  {'n/a' if sev is None else f'{sev:.3f} hops to the common ancestor'}")
    if result["generalized"]:
        for key in ("seen_accuracy", "unseen_accuracy", "harmonic_mean"):
            value = result[key]
            lines.append(f"  {key.replace('_', ' '):<16} {'n/a' if value is None else f'{value:7.2%}'}")
        note = f"  ({result['note']})" if "note" in result else ""
        lines.append(f"  gamma            {result['gamma']:.4f}{note}")
    return "\n".join(lines)
