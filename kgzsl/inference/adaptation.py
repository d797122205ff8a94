"""Candidates adapted to the user's unlabelled images: a Gaussian mixture fitted by EM from the zero-shot head.

After ``kgzsl calibrate RUN --images DIR`` the run keeps a sample of the user's pooled features
(:class:`~kgzsl.inference.scoring.ScoreCalibration`). For a small list of candidate labels those
images show where each candidate's images lie, which a predicted row (cosine about 0.27 to a real
one) can only guess. :class:`ClassAdapter` fits, on the stored features, a mixture of one Gaussian
per candidate with a shared covariance, the textbook EM:

- **start**: each image's responsibilities are the zero-shot head's softmax over the candidates;
- **M-step**: each candidate's mean ``mu_c`` and prior ``pi_c``, and the within-class covariance
  ``Sigma_w``, from the responsibilities;
- **E-step**: the responsibilities from the linear discriminant rows

  .. math::
      w_c = \\Sigma_w^{-1} (\\mu_c - \\mu), \\qquad
      b_c = -\\tfrac12 w_c \\cdot (\\mu_c - \\mu) - w_c \\cdot \\mu + \\log \\pi_c

  until they change by less than :data:`TOLERANCE` (at most :data:`MAX_ITERATIONS` rounds).

``Sigma_w`` is the within-class covariance, shrunk as the score calibration's covariance (weight
``D / (D + M)`` on ``trace(Sigma)/D · I``); the Woodbury identity gives its inverse from the total
covariance's with a ``C x C`` solve per round (:meth:`ClassAdapter._discriminant`).

In 1,280 dimensions the mixture's posterior is far too sure of itself (B1: mean top probability
0.987 at top-1 0.629), so the rows are then scaled by one factor that gives their logits, over the
images, the spread the head's logits had (0.528 at 0.629; never scaled up), and no surer on average
than two fits on random halves of the images agree (:meth:`ClassAdapter.reproducibility`: on
photos of many other things, the mixture's groups are not the candidates). Where the halves agree
no more than chance would, the list is not fitted at all. The ranking is the mixture's; the final
rows form a linear head like any other.

A mixture needs images of the candidates among the user's images, and enough of them per
candidate: the adaptation runs for 2 to :data:`MAX_CANDIDATES` candidates with at least
:data:`MIN_IMAGES_PER_CANDIDATE` stored images per candidate; otherwise the calibrated head is
used as it is. Fashion-MNIST (B1) after ``calibrate`` on 2,000 unlabelled train images, through
``predict``: the eight classes ImageNet-1k lacks, top-1 0.600 → 0.741; all ten 0.507 → 0.629
(``docs/scoring.md``).

Example:
    >>> adapter = ClassAdapter(calib.features)
    >>> rows = adapter.rows(head.logits(adapter.features))   # [C, D + 1]
"""

from __future__ import annotations

import logging

import torch

from kgzsl.errors import InputError

__all__ = ["MAX_CANDIDATES", "MAX_ITERATIONS", "MIN_IMAGES_PER_CANDIDATE", "TOLERANCE", "AdaptedHead",
           "ClassAdapter"]

logger = logging.getLogger(__name__)

MAX_ITERATIONS = 30
"""EM rounds at most."""
TOLERANCE = 1e-5
"""EM stops when the mean absolute change of the responsibilities is below this."""
MIN_IMAGES_PER_CANDIDATE = 5
"""Fewer stored images per candidate than this: no adaptation (a mean of a few images is noise)."""
MAX_CANDIDATES = 512
"""More candidates than this (a "what is this?" over the whole graph): no adaptation."""


class ClassAdapter:
    """The user's stored features and their shrunk precision matrix; fits adapted rows per label list.

    Args:
        features: ``[M, D]`` pooled features of the user's unlabelled images (``M >= 2``).

    Raises:
        InputError: If there are fewer than 2 feature vectors or they are not all finite.
    """

    def __init__(self, features: torch.Tensor) -> None:
        if features.ndim != 2 or features.size(0) < 2:
            raise InputError(f"adapting to the user's images needs at least 2 feature vectors, got shape "
                             f"{tuple(features.shape)}")
        x = features.detach().double().cpu()
        if not bool(torch.isfinite(x).all()):
            raise InputError("the stored calibration features are not all finite; redo "
                             "`kgzsl calibrate RUN --images DIR`")
        m, d = x.shape
        self.features = features.detach().float().cpu()
        self.mean = x.mean(0)
        centred = x - self.mean
        total = centred.T @ centred / m
        self.keep = 1 - d / (d + m)  # the covariance's share beside the isotropic part
        spread = float(total.trace()) / d
        #: None when the images do not vary (copies of one image): nothing can be fitted to them
        self.precision: torch.Tensor | None = None
        if spread > 1e-12:
            shrunk = self.keep * total + (1 - self.keep) * spread * torch.eye(d, dtype=total.dtype)
            self.precision = torch.cholesky_inverse(torch.linalg.cholesky(shrunk))
        else:
            logger.warning("the %d calibration images do not vary: label lists are not fitted to them", m)

    def applies(self, num_candidates: int) -> bool:
        """Whether a list of this many candidates is adapted (see :data:`MIN_IMAGES_PER_CANDIDATE`)."""
        return self.precision is not None and 2 <= num_candidates <= MAX_CANDIDATES and \
            self.features.size(0) >= MIN_IMAGES_PER_CANDIDATE * num_candidates

    def rows(self, logits: torch.Tensor) -> torch.Tensor | None:
        """``[C, D + 1]`` adapted rows, from the head's logits ``[M, C]`` on :attr:`features`: the mixture's
        rows ``[w_c | b_c]`` (:meth:`fit`) times one factor that gives their logits over the images the
        head's typical spread (the median over candidates of each one's standard deviation), and no
        more confidence than the fit's :meth:`reproducibility` (never scaled up).

        None where fits on two random halves of the images agree no more than chance would (the
        agreement of two labellings drawn apart with the halves' shares of each candidate, by more
        than two standard errors over the images): such a fit names groups of the images, not the
        candidates, and the head is better used as it is.
        """
        self._check(logits)
        votes = self._half_votes(logits)
        if votes is not None:
            agree, chance = _agreement(*votes)
            if agree <= chance + 2 * (chance * (1 - chance) / self.features.size(0)) ** 0.5:
                logger.info("%d candidates not fitted to the %d images of the run's calibration: fits on two halves "
                            "of them agree on %.0f%% of the images, no more than chance (%.0f%%)", logits.size(1),
                            self.features.size(0), 100 * agree, 100 * chance)
                return None
        rows = self.fit(logits)
        start = logits.detach().double().cpu().std(dim=0).median()
        fitted = (self.features.double() @ rows[:, :-1].T + rows[:, -1]).std(dim=0).median()
        if float(fitted) > 0:
            rows = rows * (start / fitted).clamp(max=1.0)
        if votes is not None:
            rows = rows * _scale_to_confidence(self.features.double() @ rows[:, :-1].T + rows[:, -1], agree)
        return rows.float()

    def reproducibility(self, logits: torch.Tensor) -> float | None:
        """The share of the images that mixtures fitted to two random halves of them (seeded) give the
        same candidate; None where a half has fewer than 2 images or they do not vary.

        Where the images show the candidates, the two fits agree on most of them; where the candidates
        are a few among many other things, each half's mixture finds other groups and they disagree.
        :meth:`rows` then keeps the mean top probability over the images at most at this share: on
        B5's 237 photos calibrated on themselves (a handful per candidate) the fitted rows were 0.896
        sure at top-1 0.586 without it and are 0.594 sure with it (``docs/scoring.md``).
        """
        self._check(logits)
        votes = self._half_votes(logits)
        return None if votes is None else _agreement(*votes)[0]

    def _check(self, logits: torch.Tensor) -> None:
        """Raise ValueError unless ``logits`` are ``[M, C]`` over the stored features, which vary."""
        if logits.ndim != 2 or logits.size(0) != self.features.size(0):
            raise ValueError(f"expected logits of the {self.features.size(0)} stored features, got shape "
                             f"{tuple(logits.shape)}")
        if self.precision is None:
            raise ValueError("the calibration images do not vary: nothing to fit (see applies())")

    def _half_votes(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each image's candidate under mixtures fitted to two random halves of the images (seeded),
        or None (see :meth:`reproducibility`)."""
        m = self.features.size(0)
        if m < 4:  # halves of 2 images at least
            return None
        order = torch.randperm(m, generator=torch.Generator().manual_seed(0))
        x, votes = self.features.double(), []
        for half in (order[: m // 2], order[m // 2:]):
            part = ClassAdapter(self.features[half])
            if part.precision is None:
                return None
            rows = part.fit(logits[half])
            votes.append((x @ rows[:, :-1].T + rows[:, -1]).argmax(dim=1))
        return votes[0], votes[1]

    def fit(self, logits: torch.Tensor) -> torch.Tensor:
        """``[C, D + 1]`` float64 rows ``[w_c | b_c]`` of the mixture fitted by EM from the head's logits
        ``[M, C]`` on :attr:`features`; their softmax is its posterior."""
        self._check(logits)
        x = self.features.double()
        resp = logits.detach().double().cpu().softmax(dim=1)
        for step in range(1, MAX_ITERATIONS + 1):
            count = resp.sum(0).clamp(min=1e-9)
            offset = (resp.T @ x) / count[:, None] - self.mean  # mu_c - mu
            weight = self._discriminant(offset, count / x.size(0))
            bias = -0.5 * (weight * offset).sum(1) - weight @ self.mean + torch.log(count / count.sum())
            new = (x @ weight.T + bias).softmax(dim=1)
            change = float((new - resp).abs().mean())
            resp = new
            if change < TOLERANCE:
                break
        logger.debug("adapted %d candidates on %d images in %d EM rounds (last change %.2e)", logits.size(1),
                     x.size(0), step, change)
        return torch.cat([weight, bias[:, None]], dim=1)

    def _discriminant(self, offset: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """``[C, D]`` rows ``Sigma_w^-1 (mu_c - mu)`` for the within-class covariance
        ``Sigma_w = shrunk total - keep · sum_c pi_c (mu_c - mu)(mu_c - mu)^T``.

        The Woodbury identity gives them from the total's precision ``P`` with a ``C x C`` solve:
        ``A + G K^-1 A``, where ``A = offset P``, ``G = A offset^T`` and ``K = diag(1 / (keep pi)) - G``.
        """
        a = offset @ self.precision  # type: ignore[operator]
        g = a @ offset.T
        k = torch.diag(1.0 / (self.keep * prior.clamp(min=1e-12))) - g
        return a + g @ torch.linalg.solve(k, a)


def _agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """``(share of equal votes, share expected of two votes drawn apart with the same shares)``."""
    agree = float((a == b).double().mean())
    n = int(max(int(a.max()), int(b.max()))) + 1
    chance = float((torch.bincount(a, minlength=n).double() * torch.bincount(b, minlength=n).double()).sum()) / a.numel() ** 2
    return agree, chance


def _scale_to_confidence(logits: torch.Tensor, target: float) -> float:
    """The factor in ``(0, 1]`` that brings the mean top softmax probability of ``logits`` ``[M, C]`` down to
    ``target`` (at least chance), or 1 where it is not above it; by bisection (the mean falls as the factor does)."""
    target = max(target, 1.0 / logits.size(1))

    def sureness(factor: float) -> float:
        return float((logits * factor).softmax(dim=1).max(dim=1).values.mean())

    if sureness(1.0) <= target:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (low, mid) if sureness(mid) > target else (mid, high)
    return low


class AdaptedHead:
    """A label list's head with rows adapted to the user's images; the sense a label is reported
    with is still chosen by the head it was adapted from.

    Args:
        base: The calibrated head (a :class:`~kgzsl.inference.head.LinearHead` or a composition).
        linear: The adapted rows' :class:`~kgzsl.inference.head.LinearHead`.
        senses: Per label, its sense nodes (the default sense first).
    """

    def __init__(self, base: object, linear: object, senses: list[list[int]]) -> None:
        self.base, self.linear, self.senses = base, linear, senses

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` label logits."""
        return self.linear.logits(features)  # type: ignore[attr-defined]

    def choose(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, C] label logits, [B, C] position in :attr:`senses` of each label's sense)``."""
        logits = self.logits(features)
        if hasattr(self.base, "choose"):
            return logits, self.base.choose(features)[1]
        return logits, torch.zeros(logits.shape, dtype=torch.long, device=logits.device)

    def topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(probabilities, indices, logits)`` of the k best labels."""
        return self.linear.topk(features, k)  # type: ignore[attr-defined]
