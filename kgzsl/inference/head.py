"""The candidate matrix as a fixed linear head, with an exact top-k that reads int8 rows.

Scoring an image against every one of ~22k candidate classes is one matrix-vector product with a
``[C, D]`` float32 matrix (112 MB for 21,843 × 1,280): at batch 1 that read costs about as much as
the backbone. :class:`LinearHead` keeps an int8 copy of the rows (per-row scales, 4x smaller),
scores every candidate with an exact integer product and then recomputes in float only the rows
that can still be in the top k, using a per-row bound on the quantisation error. The features are
quantised per image to 255 levels over ``[min x, max x]`` (pooled ReLU features keep their zeros
exact) and, with ``m`` the mean of ``x``,

    |s_i - ŝ_i| <= ||x - m|| · ||w_i - ŵ_i|| + |m| · |Σ(w_i - ŵ_i)| + ||x - x̂|| · ||ŵ_i||

(Cauchy–Schwarz on both quantisations; ŝ and the bound are computed in float64 with a margin, from
a float32 per-row table whose norms are rounded up). A
row whose upper bound is below the k-th best lower bound cannot be in the top k, so the returned
labels and logits are the exact ones: the shortlist is certified, not sampled. Probabilities use
the exact logits of the rescored rows and the int8 logits of the others in the softmax normaliser.

Up to 4 images on the CPU, each runs as one compiled pass (:mod:`kgzsl.inference.head_kernel`); batches
of 5-24 go through ``torch._int_mm``; wider batches use the dense float32 product, which is then
the cheaper exact head (measured on 2 cores: 32 ms for 64 images against 51 ms through int8).
Where the rows are close to low rank, as the rows a graph network predicts are (DGP's 21,843
ImageNet rows keep 99.9% of their centred energy in 512 of 1,280 directions), the batch-1 pass
reads a low-rank int8 copy instead (:mod:`kgzsl.inference.head_basis`, :mod:`kgzsl.inference.head_kernel_lowrank`):
15.6 MB per image instead of 28 MB, with the same certified shortlist and exact rescoring.
The int8 copies are built on the second call (about 2 s for those rows on 2 cores), so a
one-off prediction never pays for them.

Example:
    >>> head = LinearHead(matrix)                       # [C, D + 1] rows [W | b]
    >>> probs, idx, top_logits = head.topk(features, 5)
"""

from __future__ import annotations

import logging
from types import ModuleType

import torch

__all__ = ["LinearHead", "INT8_MIN_ROWS"]

logger = logging.getLogger(__name__)

INT8_MIN_ROWS = 4096
"""Below this many candidates the float32 product is already cheap; no int8 copy is made."""
_REL = 1e-9  # relative margin for float64 rounding in the approximate logits
_KERNEL_MAX_K = 64  # beyond this the shortlist is wide anyway: the batched path
_KERNEL_MAX_BATCH = 4  # up to this many images, one kernel pass each (one int8 read per image)
_INT8_MAX_BATCH = 24  # beyond this the dense float32 product is cheaper than the int8 shortlist
_CHUNK = 2048  # rows quantised at a time (bounded float64 temporaries)
_kernel_module: ModuleType | None | bool = None  # kgzsl.inference.head_kernel once imported, False if unavailable


def _int_mm_available() -> bool:
    try:
        a = torch.ones(1, 8, dtype=torch.int8)
        return bool(torch._int_mm(a, torch.ones(8, 8, dtype=torch.int8).T)[0, 0] == 8)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _kernel() -> ModuleType | None:
    """The compiled batch-1 kernel module, or None where numba is missing."""
    global _kernel_module
    if _kernel_module is None:
        try:
            from kgzsl.inference import head_kernel

            _kernel_module = head_kernel
        except ImportError as exc:  # numba missing or broken: the batched torch path serves batch 1 too
            logger.info("batch-1 head kernel unavailable (%s); using torch ops", exc)
            _kernel_module = False
    return _kernel_module or None


def _quantize_features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image, 255 levels over ``[min x, max x]``: ``x̂ = lo + step · level``.

    Args:
        x: ``[B, D]`` float64 features.

    Returns:
        ``(level, lo, step, err, dev)``: ``level`` ``[B, D]`` in 0..254 (float64); ``lo``, ``step``,
        ``err = ||x - x̂||`` and ``dev = ||x - mean x||`` as ``[B, 1]``, the norms rounded up.
    """
    lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
    step = (hi - lo) / 254.0
    inv = torch.where(step > 0, 1.0 / step.clamp_min(1e-300), torch.zeros_like(step))
    level = torch.floor((x - lo) * inv + 0.5).clamp_(0, 254)
    err = (x - (lo + step * level)).norm(dim=1, keepdim=True) * (1 + _REL)
    dev = (x - x.mean(1, keepdim=True)).norm(dim=1, keepdim=True) * (1 + _REL)
    return level, lo, step, err, dev


class LinearHead:
    """Scores of pooled features against fixed classifier rows ``[W | b]``.

    Args:
        matrix: ``[C, D + 1]`` candidate rows (weights then bias), already scaled.
        int8: ``"auto"`` (an int8 shortlist on the CPU when there are at least
            :data:`INT8_MIN_ROWS` candidates, built on the second :meth:`topk` call), True (built
            now) or False.

    Shapes:
        - features: ``[B, D]``
        - :meth:`logits`: ``[B, C]``; :meth:`topk`: three ``[B, k]`` tensors
    """

    def __init__(self, matrix: torch.Tensor, int8: bool | str = "auto") -> None:
        if matrix.ndim != 2 or matrix.size(1) < 2:
            raise ValueError(f"a head needs a [C, D + 1] matrix of rows [W | b], got shape {tuple(matrix.shape)}")
        self.weight = matrix[:, :-1].detach().float().contiguous()
        self.bias = matrix[:, -1].detach().float().contiguous()
        wanted = int8
        if int8 == "auto":
            wanted = self.weight.device.type == "cpu" and self.weight.size(0) >= INT8_MIN_ROWS
        self.int8 = bool(wanted) and self.weight.device.type == "cpu" and _int_mm_available()
        if wanted and not self.int8:
            logger.info("int8 head unavailable here (needs torch._int_mm on the CPU); scoring in float32")
        self._q: torch.Tensor | None = None
        self._low = None  # kgzsl.inference.head_basis.LowRankRows once quantised, if the rows are low rank
        self._calls = 0
        if self.int8 and int8 is True:
            self._quantize()

    def _quantize(self) -> None:
        """The int8 rows ``Q`` and the float32 table ``[scale, Σ Q, b, ||w - ŵ||, |Σ(w - ŵ)|, ||ŵ||]``.

        ``ŵ = scale · Q`` is exact in float64 (a float32 scale times an integer); the norms are
        computed in float64 and rounded up to float32, so the bound stays a bound.
        """
        c, d = self.weight.shape
        self._q = torch.empty(c, d, dtype=torch.int8)
        tab = torch.empty(c, 6, dtype=torch.float32)
        up = torch.tensor(float("inf"))
        for s in range(0, c, _CHUNK):
            w = self.weight[s:s + _CHUNK]
            scale = (w.abs().amax(1) / 127.0).clamp_min(1e-30)
            q = torch.round(w.double() / scale.double()[:, None]).clamp_(-127, 127)
            diff = w.double() - q * scale.double()[:, None]
            self._q[s:s + _CHUNK] = q.to(torch.int8)
            norms = torch.stack([diff.norm(dim=1), diff.sum(1).abs(), (q * scale.double()[:, None]).norm(dim=1)], 1)
            tab[s:s + _CHUNK, :3] = torch.stack([scale, q.sum(1).float(), self.bias[s:s + _CHUNK]], 1)
            tab[s:s + _CHUNK, 3:] = torch.nextafter(norms.float(), up)
        self._tab = tab
        # the compiled pass reads numpy views: the table by columns, so each column is contiguous
        self._arrays = (self._q.numpy(), tab.T.contiguous().numpy(), self.weight.numpy(), self.bias.numpy())
        logger.debug("int8 head: %d rows, %.1f MB", c, self._q.numel() / 1e6)
        if _kernel() is not None and c >= INT8_MIN_ROWS:  # batch 1 reads a low-rank copy where the rows allow
            from kgzsl.inference.head_basis import fit_low_rank

            self._low = fit_low_rank(self.weight)

    def path(self, batch: int = 1) -> str:
        """How a batch of this size is scored: ``"kernel"`` (one compiled int8 pass per image),
        ``"kernel-lowrank"`` (the same over the low-rank int8 copy, once built), ``"int8"``
        (``torch._int_mm`` shortlist) or ``"float32"`` (dense product)."""
        if not self.int8 or not 0 < batch <= _INT8_MAX_BATCH:
            return "float32"
        if batch > _KERNEL_MAX_BATCH or _kernel() is None:
            return "int8"
        return "kernel-lowrank" if self._low is not None else "kernel"

    @property
    def low_rank(self) -> int | None:
        """Rank of the low-rank int8 copy the batch-1 pass reads, None if there is none (yet)."""
        return self._low.rank if self._low is not None else None

    @property
    def num_classes(self) -> int:
        """Number of candidate rows C."""
        return self.weight.size(0)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Exact float32 logits ``[B, C]``."""
        return torch.addmm(self.bias, features.float(), self.weight.T)

    def approximate_logits(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Int8 logits ``ŝ`` ``[B, C]`` (float64) and a bound ``e`` with ``|logits - ŝ| <= e`` everywhere.

        Raises:
            RuntimeError: If the head was built without its int8 copy.
        """
        if not self.int8:
            raise RuntimeError("this head has no int8 copy; build it with LinearHead(matrix, int8=True)")
        if self._q is None:
            self._quantize()
        x = features.detach().double()
        level, lo, step, err, dev = _quantize_features(x)
        acc = torch._int_mm((level - 127).to(torch.int8), self._q.T).double()  # Σ (q - 127) Q, exact
        tab = self._tab.double()
        t1 = lo * (tab[:, 0] * tab[:, 1])
        t2 = step * tab[:, 0] * (acc + 127.0 * tab[:, 1])  # Σ q Q
        approx = t1 + t2 + tab[:, 2]
        bound = (dev * tab[:, 3] + x.mean(1, keepdim=True).abs() * tab[:, 4] + err * tab[:, 5]
                 + _REL * (t1.abs() + t2.abs() + tab[:, 2].abs()) + 1e-300)
        return approx, bound

    def topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The k best candidates per image, with their softmax probabilities and exact logits.

        Args:
            features: ``[B, D]`` pooled features.
            k: How many candidates (at most C).

        Returns:
            ``(probabilities, indices, logits)``, each ``[B, k]``, best first. Indices and logits
            equal those of the float32 product (ties and float rounding aside).
        """
        k = min(int(k), self.num_classes)
        b = features.size(0)
        if not self.int8 or not 0 < b <= _INT8_MAX_BATCH:  # wide batches: the dense product is cheaper
            return self._dense_topk(features, k)
        self._calls += 1
        if self._q is None:
            if self._calls < 2:  # a one-off call: quantising would cost more than it saves
                return self._dense_topk(features, k)
            self._quantize()
        if b <= _KERNEL_MAX_BATCH and k <= _KERNEL_MAX_K and _kernel() is not None:
            if b == 1:
                return self._kernel_topk(features, k)
            parts = [self._kernel_topk(features[i:i + 1], k) for i in range(b)]
            return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]
        if not bool(torch.isfinite(features).all()):
            return self._dense_topk(features, k)
        approx, bound = self.approximate_logits(features)
        floor = (approx - bound).topk(k, dim=1).values[:, -1:]
        maybe = bound.add_(approx) >= floor  # rows whose upper bound reaches the k-th lower bound
        rows = (maybe[0] if maybe.size(0) == 1 else maybe.any(0)).nonzero().squeeze(1)
        if rows.numel() > self.num_classes // 4:  # a wide batch: the dense product is as cheap
            return self._dense_topk(features, k)
        exact = torch.addmm(self.bias[rows], features.float(), self.weight[rows].T)
        top, pos = exact.masked_fill(~maybe[:, rows], float("-inf")).topk(k, dim=1)
        # softmax normaliser: exact logits where computed, int8 ones elsewhere; no row outside the
        # shortlist can exceed the best exact logit, so it is the maximum
        mixed = approx.index_copy_(1, rows, exact.double()).sub_(top[:, :1]).exp_()
        probs = (top - top[:, :1]).double().exp_() / mixed.sum(1, keepdim=True)
        return probs.float(), rows[pos], top

    def _dense_topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.logits(features)
        top, idx = logits.topk(k, dim=1)
        return (top - logits.logsumexp(1, keepdim=True)).exp(), idx, top

    def _kernel_topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch 1 through the compiled kernel; the dense product answers NaN features and wide shortlists."""
        x = features.detach() if features.requires_grad else features
        if x.dtype != torch.float32 or not x.is_contiguous():  # every torch op here costs ~10 us cold
            x = x.float().contiguous()
        threads, limit = torch.get_num_threads(), self.num_classes // 4
        if self._low is not None:
            from kgzsl.inference.head_kernel_lowrank import topk_lowrank

            probs, logits, idx, n, _, _ = topk_lowrank(x.numpy(), self._low, *self._arrays[2:], k, threads=threads,
                                                       max_rows=limit)
        else:
            probs, logits, idx, n, _, _ = _kernel().topk_one(x.numpy(), *self._arrays, k, threads=threads,
                                                             max_rows=limit)
        if n < 0:
            return self._dense_topk(features, k)
        return torch.from_numpy(probs), torch.from_numpy(idx), torch.from_numpy(logits)
