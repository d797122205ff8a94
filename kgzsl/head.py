"""The candidate matrix as a fixed linear head, with an exact top-k that reads int8 rows.

Scoring an image against every one of ~22k candidate classes is one matrix-vector product with a
``[C, D]`` float32 matrix (112 MB for 21,843 × 1,280): at batch 1 that read costs about as much as
the backbone. :class:`LinearHead` keeps an int8 copy of the rows (per-row scales, 4x smaller),
scores every candidate with an int8 product and then recomputes in float32 only the rows that can
still be in the top k, using a per-row bound on the int8 error:

    |s_i - ŝ_i| <= ||w_i - ŵ_i|| · ||x'|| + ||ŵ_i|| · ||x' - x̂'||   (x' = x - mean(x))

(Cauchy–Schwarz on both quantisations, plus a float-rounding margin). A row whose upper bound is
below the k-th best lower bound cannot be in the top k, so the returned labels and logits are the
float32 ones: the shortlist is certified, not sampled. Probabilities use the exact logits of the
rescored rows and the int8 logits of the others in the softmax normaliser.

Example:
    >>> head = LinearHead(matrix)                       # [C, D + 1] rows [W | b]
    >>> probs, idx, top_logits = head.topk(features, 5)
"""

from __future__ import annotations

import logging

import torch

__all__ = ["LinearHead", "INT8_MIN_ROWS"]

logger = logging.getLogger(__name__)

INT8_MIN_ROWS = 4096
"""Below this many candidates the float32 product is already cheap; no int8 copy is made."""
_FLOAT_SLACK = 1e-5  # relative margin for float32 rounding in both products


def _int_mm_available() -> bool:
    try:
        a = torch.ones(1, 8, dtype=torch.int8)
        return bool(torch._int_mm(a, torch.ones(8, 8, dtype=torch.int8).T)[0, 0] == 8)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class LinearHead:
    """Scores of pooled features against fixed classifier rows ``[W | b]``.

    Args:
        matrix: ``[C, D + 1]`` candidate rows (weights then bias), already scaled.
        int8: ``"auto"`` (an int8 shortlist on the CPU when there are at least
            :data:`INT8_MIN_ROWS` candidates), True or False.

    Shapes:
        - features: ``[B, D]``
        - :meth:`logits`: ``[B, C]``; :meth:`topk`: three ``[B, k]`` tensors
    """

    def __init__(self, matrix: torch.Tensor, int8: bool | str = "auto") -> None:
        if matrix.ndim != 2 or matrix.size(1) < 2:
            raise ValueError(f"a head needs a [C, D + 1] matrix of rows [W | b], got shape {tuple(matrix.shape)}")
        self.weight = matrix[:, :-1].float().contiguous()
        self.bias = matrix[:, -1].float().contiguous()
        if int8 == "auto":
            int8 = self.weight.device.type == "cpu" and self.weight.size(0) >= INT8_MIN_ROWS
        self.int8 = bool(int8) and self.weight.device.type == "cpu" and _int_mm_available()
        if int8 and not self.int8:
            logger.info("int8 head unavailable here (needs torch._int_mm on the CPU); scoring in float32")
        if self.int8:
            self._quantize()

    def _quantize(self) -> None:
        w = self.weight
        self.w_scale = w.abs().amax(1).clamp_min(1e-30) / 127.0
        q = torch.round(w / self.w_scale[:, None]).clamp_(-127, 127)
        self.w_q = q.to(torch.int8)
        w_hat = q * self.w_scale[:, None]
        w_err = (w - w_hat).norm(dim=1)  # ||w_i - ŵ_i||
        w_hat_norm = w_hat.norm(dim=1)  # ||ŵ_i||
        w_sum = w.sum(1)  # for the shift x' = x - m: w·x = w·x' + m Σ w
        self.w_offset = torch.stack([w_sum, self.bias])  # [2, C]: ŝ = acc·s_x·s_w + [m, 1] @ this
        # bound = [||x'||, ||x' - x̂'||, |m|, 1] @ this: the Cauchy–Schwarz terms plus a float margin
        self.w_bound = torch.stack([w_err + _FLOAT_SLACK * w_hat_norm, w_hat_norm * (1 + _FLOAT_SLACK),
                                    _FLOAT_SLACK * w_sum.abs(), _FLOAT_SLACK * self.bias.abs() + 1e-6])
        logger.debug("int8 head: %d rows, %.1f MB", w.size(0), self.w_q.numel() / 1e6)

    @property
    def num_classes(self) -> int:
        """Number of candidate rows C."""
        return self.weight.size(0)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Exact float32 logits ``[B, C]``."""
        return torch.addmm(self.bias, features.float(), self.weight.T)

    def approximate_logits(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Int8 logits ``ŝ`` ``[B, C]`` and a bound ``e`` with ``|logits - ŝ| <= e`` everywhere.

        Raises:
            RuntimeError: If the head was built without its int8 copy.
        """
        if not self.int8:
            raise RuntimeError("this head has no int8 copy; build it with LinearHead(matrix, int8=True)")
        x = features.float()
        shift = x.mean(1, keepdim=True)  # the scalar m minimising ||x - m||, which the bound scales with
        xs = x - shift
        x_scale = xs.abs().amax(1, keepdim=True).clamp_min(1e-30) / 127.0
        x_q = torch.round(xs / x_scale).clamp_(-127, 127)
        x_err = (xs - x_q * x_scale).norm(dim=1, keepdim=True)
        acc = torch._int_mm(x_q.to(torch.int8), self.w_q.T).float()  # exact int32 sums
        ones = torch.ones_like(shift)
        approx = torch.addcmul(torch.cat([shift, ones], 1) @ self.w_offset, acc, x_scale * self.w_scale)
        bound = torch.cat([xs.norm(dim=1, keepdim=True), x_err, shift.abs(), ones], 1) @ self.w_bound
        return approx, bound

    def topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The k best candidates per image, with their softmax probabilities and exact logits.

        Args:
            features: ``[B, D]`` pooled features.
            k: How many candidates (at most C).

        Returns:
            ``(probabilities, indices, logits)``, each ``[B, k]``, best first. Indices and logits
            equal those of the float32 product (ties aside).
        """
        k = min(int(k), self.num_classes)
        if not self.int8 or features.size(0) == 0 or not bool(torch.isfinite(features).all()):
            logits = self.logits(features)
            top, idx = logits.topk(k, dim=1)
            return (top - logits.logsumexp(1, keepdim=True)).exp(), idx, top
        approx, bound = self.approximate_logits(features)
        floor = (approx - bound).topk(k, dim=1).values[:, -1:]
        maybe = bound.add_(approx) >= floor  # rows whose upper bound reaches the k-th lower bound
        rows = (maybe[0] if maybe.size(0) == 1 else maybe.any(0)).nonzero().squeeze(1)
        if rows.numel() > self.num_classes // 4:  # a wide batch: the dense product is as cheap
            logits = self.logits(features)
            top, idx = logits.topk(k, dim=1)
            return (top - logits.logsumexp(1, keepdim=True)).exp(), idx, top
        exact = torch.addmm(self.bias[rows], features.float(), self.weight[rows].T)
        top, pos = exact.masked_fill(~maybe[:, rows], float("-inf")).topk(k, dim=1)
        # softmax normaliser: exact logits where computed, int8 ones elsewhere; no row outside the
        # shortlist can exceed the best exact logit, so it is the maximum
        mixed = approx.index_copy_(1, rows, exact).sub_(top[:, :1]).exp_()
        return (top - top[:, :1]).exp_() / mixed.sum(1, keepdim=True), rows[pos], top
