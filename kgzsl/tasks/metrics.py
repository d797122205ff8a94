"""Zero-shot evaluation metrics on score matrices: hit@k, generalized accuracy, mistake severity.

Every function takes a ``[N, C]`` score matrix (N images, C candidate classes) and ``[N]`` target
column indices. Ranks follow the reference protocol: the true class's rank is 1 plus the number
of *other* candidates scoring at least as high, so ties count against the prediction; top-1
accuracy is the fraction of images with rank 1.

Generalized zero-shot learning (seen and unseen classes are both candidates) uses calibrated
stacking (Chao et al., 2016): a constant ``gamma`` is subtracted from the seen-class scores, chosen
on a validation set by :func:`choose_gamma`. :func:`evaluate_run <kgzsl.tasks.evaluate.evaluate_run>`
applies all of this to a trained run and a folder of images.

Example:
    >>> scores = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    >>> hit_at_k(scores, torch.tensor([0, 0]), ks=(1, 2))
    {1: 0.5, 2: 1.0}
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Sequence

import torch

from kgzsl.errors import InputError

if TYPE_CHECKING:
    from kgzsl.graph import KnowledgeGraph

__all__ = ["true_class_ranks", "hit_at_k", "hit_from_ranks", "calibrated_stacking", "seen_unseen_accuracy",
           "gzsl_thresholds", "choose_gamma", "calibration_error", "mean_per_class_accuracy", "lca_heights",
           "mistake_severity", "harmonic_mean", "DEFAULT_KS"]

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 2, 5, 10, 20)


def _check(scores: torch.Tensor, targets: torch.Tensor) -> None:
    if scores.ndim != 2 or targets.ndim != 1 or scores.size(0) != targets.size(0):
        raise ValueError(f"expected scores [N, C] and targets [N], got {tuple(scores.shape)} and "
                         f"{tuple(targets.shape)}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= scores.size(1)):
        raise ValueError(f"targets must be column indices in [0, {scores.size(1)})")


def true_class_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank of each image's true class: 1 + the number of other candidates scoring ``>=`` it.

    A NaN true score gets the worst rank ``C``.

    Shapes:
        - scores: ``[N, C]``; targets: ``[N]`` column indices
        - output: ``[N]`` long, in ``1..C``
    """
    _check(scores, targets)
    targets = targets.to(scores.device, torch.long)
    true = scores.gather(1, targets[:, None])
    at_least = scores >= true
    at_least.scatter_(1, targets[:, None], False)
    ranks = 1 + at_least.sum(1)
    return torch.where(true[:, 0].isnan(), torch.full_like(ranks, scores.size(1)), ranks)


def hit_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """Fraction of images whose true class is within the top ``k``, for each ``k`` in ``ks``."""
    if ranks.numel() == 0:
        raise ValueError("no images to evaluate")
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    return {int(k): (ranks <= k).double().mean().item() for k in ks}


def hit_at_k(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """Hit@k averaged over images (k larger than the number of candidates counts as a hit).

    Args:
        scores: ``[N, C]`` scores.
        targets: ``[N]`` column index of each image's true class.
        ks: The cut-offs.

    Returns:
        ``{k: hit rate in [0, 1]}``.
    """
    return hit_from_ranks(true_class_ranks(scores, targets), ks)


def calibrated_stacking(scores: torch.Tensor, seen_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return ``scores`` with ``gamma`` subtracted from the seen-class columns (a new tensor).

    Shapes:
        - scores: ``[N, C]``; seen_mask: ``[C]`` bool
    """
    seen_mask = seen_mask.to(scores.device, torch.bool)
    if seen_mask.shape != scores.shape[1:]:
        raise ValueError(f"seen_mask has shape {tuple(seen_mask.shape)}, expected [{scores.size(1)}]")
    return scores - gamma * seen_mask.to(scores.dtype)


def harmonic_mean(a: float, b: float) -> float:
    """``2ab / (a + b)``; 0 when either is 0, NaN when either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


def _group_means(correct: torch.Tensor, is_seen: torch.Tensor) -> tuple[float, float]:
    seen = correct[is_seen].double().mean().item() if bool(is_seen.any()) else math.nan
    unseen = correct[~is_seen].double().mean().item() if bool((~is_seen).any()) else math.nan
    return seen, unseen


def seen_unseen_accuracy(scores: torch.Tensor, targets: torch.Tensor, seen_mask: torch.Tensor) -> dict[str, float]:
    """Top-1 accuracy over images of seen classes and of unseen classes, and their harmonic mean.

    Apply :func:`calibrated_stacking` to ``scores`` first to evaluate a calibrated model. A group
    without images has accuracy NaN.

    Returns:
        ``{"seen": ..., "unseen": ..., "harmonic": ...}``.
    """
    correct = true_class_ranks(scores, targets) == 1
    is_seen = seen_mask.to(scores.device, torch.bool)[targets.to(scores.device, torch.long)]
    seen, unseen = _group_means(correct, is_seen)
    return {"seen": seen, "unseen": unseen, "harmonic": harmonic_mean(seen, unseen)}


def gzsl_thresholds(scores: torch.Tensor, targets: torch.Tensor,
                    seen_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image summary that gives the calibrated top-1 outcome for every ``gamma`` at once.

    An image of a seen class is right after calibrated stacking iff ``gamma < threshold``; an
    image of an unseen class iff ``gamma > threshold`` (thresholds are ``-inf`` / ``+inf`` for
    images already wrong within their own group). The gap is best seen minus best unseen score.

    Returns:
        ``(is_seen [N] bool, threshold [N] float64, gap [N] float64)``.
    """
    _check(scores, targets)
    seen_mask = seen_mask.to(scores.device, torch.bool)
    targets = targets.to(scores.device, torch.long)
    s = scores.double()
    neg = torch.tensor(-math.inf, dtype=s.dtype, device=s.device)
    best_seen = torch.where(seen_mask, s, neg).amax(1)
    best_unseen = torch.where(~seen_mask, s, neg).amax(1)
    true = s.gather(1, targets[:, None])[:, 0]
    is_seen = seen_mask[targets]
    # right within its own group: no other candidate of the same group scores >= the true class
    same_group = seen_mask[None, :] == is_seen[:, None]
    rivals = (s >= true[:, None]) & same_group
    rivals.scatter_(1, targets[:, None], False)
    within = ~rivals.any(1) & ~true.isnan()
    threshold = torch.where(is_seen, true - best_unseen, best_seen - true)
    within &= ~threshold.isnan()  # inf - inf: never right
    threshold = torch.where(within, threshold, torch.where(is_seen, -math.inf, math.inf))
    return is_seen, threshold, best_seen - best_unseen


def _accuracy_at(is_seen: torch.Tensor, threshold: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
    """``[G, 2]`` seen / unseen calibrated top-1 accuracy for each gamma (by binary search, O((N + G) log N))."""
    g = gammas.to(threshold)
    seen, _ = threshold[is_seen].sort()
    unseen, _ = threshold[~is_seen].sort()
    nan = torch.full_like(g, math.nan, dtype=torch.float64)
    # seen images are right where threshold > gamma, unseen images where threshold < gamma
    n_seen, n_unseen = seen.numel(), unseen.numel()
    acc_seen = (n_seen - torch.searchsorted(seen, g, right=True)).double() / n_seen if n_seen else nan
    acc_unseen = torch.searchsorted(unseen, g, right=False).double() / n_unseen if n_unseen else nan
    return torch.stack([acc_seen, acc_unseen], 1)


def _best_gamma(is_seen: torch.Tensor, threshold: torch.Tensor, gap: torch.Tensor,
                grid: Sequence[float] | torch.Tensor | None = None, num_quantiles: int = 101) -> tuple[float, float]:
    if not bool(is_seen.any()) or bool(is_seen.all()):
        raise InputError("choosing gamma needs images of both seen and unseen classes")
    if grid is None:
        finite = gap[gap.isfinite()].cpu()
        if finite.numel() > 1_000_000:  # torch.quantile has an input size limit; a sample is plenty
            finite = finite[torch.randperm(finite.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
        qs = torch.quantile(finite, torch.linspace(0, 1, num_quantiles, dtype=finite.dtype)) if finite.numel() \
            else torch.zeros(0, dtype=torch.float64)
        grid = torch.cat([torch.zeros(1, dtype=torch.float64), qs])
    gammas = torch.as_tensor(grid, dtype=torch.float64).flatten().unique()
    if gammas.numel() == 0:
        raise ValueError("empty gamma grid")
    acc = _accuracy_at(is_seen, threshold, gammas.to(threshold.device)).cpu()
    h = torch.where((acc > 0).all(1), 2 * acc[:, 0] * acc[:, 1] / acc.sum(1).clamp_min(1e-300), 0.0)
    # the best harmonic mean; among equals the gamma closest to 0 (least calibration)
    best = max(range(gammas.numel()), key=lambda i: (h[i].item(), -abs(gammas[i].item())))
    return gammas[best].item(), h[best].item()


def choose_gamma(scores: torch.Tensor, targets: torch.Tensor, seen_mask: torch.Tensor,
                 grid: Sequence[float] | torch.Tensor | None = None) -> tuple[float, float]:
    """The calibrated-stacking ``gamma`` with the best seen/unseen harmonic mean.

    Use it on a validation set, never on the test set.

    Args:
        scores: ``[N, C]`` validation scores.
        targets: ``[N]`` true columns.
        seen_mask: ``[C]`` True for seen-class columns.
        grid: Gammas to try; default 0 plus 101 quantiles of the per-image gap between the best
            seen and the best unseen score.

    Returns:
        ``(gamma, harmonic mean at gamma)``; ties go to the gamma closest to 0.

    Raises:
        ValueError: If the images do not cover both seen and unseen classes.
    """
    return _best_gamma(*gzsl_thresholds(scores, targets, seen_mask), grid=grid)


def calibration_error(logits: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """How far the softmax's top probability is from the accuracy (expected calibration error).

    The images are put in ``bins`` equal-width bins of their top probability; the error is the
    image-weighted mean over bins of ``|accuracy - mean top probability|`` (Guo et al. 2017).

    Returns:
        ``{"mean_confidence", "ece"}``.
    """
    _check(logits, targets)
    if targets.numel() == 0:
        raise ValueError("no images to evaluate")
    probs = logits.double().softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets.to(predicted.device)).double()
    which = (confidence * bins).ceil().clamp(1, bins).long() - 1  # bin i holds (i/bins, (i+1)/bins]
    gap = torch.bincount(which, weights=correct - confidence, minlength=bins)  # per bin: hits - confidence
    return {"mean_confidence": float(confidence.mean()), "ece": float(gap.abs().sum() / targets.numel())}


def mean_per_class_accuracy(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy averaged over the classes that have images (each class weighs the same)."""
    correct = (true_class_ranks(scores, targets) == 1).double()
    if correct.numel() == 0:
        raise ValueError("no images to evaluate")
    t = targets.to(correct.device, torch.long)
    count = torch.bincount(t, minlength=scores.size(1)).double()
    hits = torch.bincount(t, weights=correct, minlength=scores.size(1))
    present = count > 0
    return (hits[present] / count[present]).mean().item()


def lca_heights(pred: torch.Tensor | Sequence[int], true: torch.Tensor | Sequence[int],
                graph: KnowledgeGraph) -> torch.Tensor:
    """Hops from each true class up to its lowest common ancestor with the prediction.

    The height is the smallest distance from the true class to any ancestor it shares with the
    prediction: 0 for a correct prediction (or a descendant of the truth), the distance to the
    prediction if the prediction is an ancestor of the truth, NaN if they share no ancestor.

    Args:
        pred: ``[M]`` predicted node indices of ``graph``.
        true: ``[M]`` true node indices.
        graph: The class graph.

    Returns:
        ``[M]`` float64 heights.
    """
    pred = torch.as_tensor(pred, dtype=torch.long).flatten().cpu()
    true = torch.as_tensor(true, dtype=torch.long).flatten().cpu()
    if pred.shape != true.shape:
        raise ValueError(f"pred and true differ in length: {pred.numel()} vs {true.numel()}")
    n = graph.num_nodes
    pairs, inverse = torch.unique(true * n + pred, return_inverse=True)  # mistakes repeat: score each once
    keys = pairs.tolist()
    ups = {node: graph.ancestors(node) for node in {k // n for k in keys} | {k % n for k in keys}}  # once per node
    heights = [min((d for a, d in ups[key // n].items() if a in ups[key % n]), default=math.nan) for key in keys]
    return torch.tensor(heights, dtype=torch.float64)[inverse] if heights else torch.zeros(0, dtype=torch.float64)


def mistake_severity(pred: torch.Tensor | Sequence[int], true: torch.Tensor | Sequence[int],
                     graph: KnowledgeGraph) -> float:
    """Mean :func:`lca_heights` over the wrong predictions only (NaN if none is wrong).

    Pairs without a common ancestor are left out of the mean, with a warning.
    """
    pred = torch.as_tensor(pred, dtype=torch.long).flatten().cpu()
    true = torch.as_tensor(true, dtype=torch.long).flatten().cpu()
    wrong = pred != true
    if not bool(wrong.any()):
        return math.nan
    heights = lca_heights(pred[wrong], true[wrong], graph)
    unrelated = int(heights.isnan().sum())
    if unrelated:
        logger.warning("%d wrong predictions share no ancestor with their true class; left out of the "
                       "mistake severity", unrelated)
    return heights.nanmean().item() if unrelated < heights.numel() else math.nan
