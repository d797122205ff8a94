"""The candidate rows as a fixed linear head, with an exact top-k that reads an int8 copy.

Scoring an image against ~22k classes reads a ``[C, D]`` float32 matrix (112 MB for 21,843 ×
1,280): at batch 1 about half a backbone pass. With at least :data:`INT8_MIN_ROWS` candidates
on the CPU, :meth:`LinearHead.topk` scores every row from an int8 copy with a per-row error bound
(:mod:`~kgzsl.inference.head_int8`; 11 MB for DGP's ImageNet rows) and rescores exactly only the
rows that can still be in the top k (:mod:`~kgzsl.inference.head_kernel`): labels and logits are
the float32 product's; the softmax normaliser takes the int8 scores of the other rows. The copy
is built on the second :meth:`~LinearHead.topk` call (about 2 s on 2 cores), so a one-off
prediction never pays for it; batches of more than 8 images use the float32 product.

Example:
    >>> head = LinearHead(matrix)                       # [C, D + 1] rows [W | b]
    >>> probs, idx, top_logits = head.topk(features, 5)
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from kgzsl.inference.head_int8 import Int8Rows

__all__ = ["INT8_MIN_ROWS", "HeadCache", "LinearHead", "SplitHead"]

logger = logging.getLogger(__name__)

INT8_MIN_ROWS = 4096
"""Below this many candidates the float32 product is already cheap; no int8 copy is made."""
_INT8_MAX_BATCH = 8  # one int8 pass per image up to this many; a wider batch reads the float32 rows once

def _kernel() -> Any:
    """The compiled int8 pass (numba loads on first use, not with kgzsl), or None without numba."""
    try:
        from kgzsl.inference import head_kernel
    except ImportError:
        return None
    return head_kernel


class LinearHead:
    """Logits ``scale · (x · w_i + b_i)`` of pooled features against fixed rows ``[W | b]``.

    The head reads ``matrix`` through views, never a float32 copy of its own.

    Args:
        matrix: ``[C, D + 1]`` candidate rows (weights then bias).
        int8: ``"auto"`` (an int8 shortlist on the CPU when there are at least
            :data:`INT8_MIN_ROWS` candidates, built on the second :meth:`topk` call), True (built
            now) or False.
        scale: Positive factor of every logit (a classifier's row scale).

    Shapes:
        - features: ``[B, D]``
        - :meth:`logits`: ``[B, C]``; :meth:`topk`: three ``[B, k]`` tensors
    """

    def __init__(self, matrix: torch.Tensor, int8: bool | str = "auto", scale: float = 1.0) -> None:
        if matrix.ndim != 2 or matrix.size(1) < 2:
            raise ValueError(f"a head needs a [C, D + 1] matrix of rows [W | b], got shape {tuple(matrix.shape)}")
        if not 0 < scale < float("inf"):
            raise ValueError(f"scale must be a positive finite number, got {scale}")
        matrix = matrix.detach().float()  # no copy when already float32
        self.weight, self.bias, self.scale = matrix[:, :-1], matrix[:, -1], float(scale)
        wanted = int8
        if int8 == "auto":
            wanted = matrix.device.type == "cpu" and matrix.size(0) >= INT8_MIN_ROWS
        self.int8 = bool(wanted) and matrix.device.type == "cpu" and _kernel() is not None
        if wanted and not self.int8:
            logger.info("int8 head unavailable here (needs numba and the CPU); scoring in float32")
        self._low: Int8Rows | None = None
        self._build_lock = threading.Lock()  # this head's one-off build; never held while scoring
        self._calls = 0
        if self.int8 and int8 is True:
            self._int8_rows()

    def _int8_rows(self) -> Int8Rows | None:
        """The int8 copy, built once (None, and int8 off, when the rows are not all finite)."""
        with self._build_lock:
            if self._low is None and self.int8:
                if bool(torch.isfinite(self.weight).all() and torch.isfinite(self.bias).all()):
                    self._low = Int8Rows.build(self.weight, self.bias)
                else:
                    logger.info("the head's rows are not all finite; scoring in float32")
                    self.int8 = False
        return self._low

    def path(self, batch: int = 1) -> str:
        """How a batch of this size is scored: ``"int8-lowrank"`` or ``"int8"`` (one int8 pass per
        image over a low-rank or full-width copy; ``"int8"`` until the copy is built) or ``"float32"``."""
        if not self.int8 or not 0 < batch <= _INT8_MAX_BATCH:
            return "float32"
        return "int8-lowrank" if self.low_rank is not None else "int8"

    @property
    def low_rank(self) -> int | None:
        """Rank of the low-rank int8 copy, None if there is none (yet)."""
        return self._low.rank if self._low is not None else None

    @property
    def num_classes(self) -> int:
        """Number of candidate rows C."""
        return self.weight.size(0)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Exact float32 logits ``[B, C]``."""
        return torch.addmm(self.bias, features.float(), self.weight.T, beta=self.scale, alpha=self.scale)

    def topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The k best candidates per image, with their softmax probabilities and exact logits.

        Args:
            features: ``[B, D]`` pooled features.
            k: How many candidates (at most C).

        Returns:
            ``(probabilities, indices, logits)``, each ``[B, k]``, best first. Indices and logits
            equal those of the float32 product (ties and float rounding aside).
        """
        k, kernel, most = min(int(k), self.num_classes), _kernel(), self.num_classes // 4
        if not self.int8 or not 0 < features.size(0) <= _INT8_MAX_BATCH or k > kernel.MAX_K:
            return self._dense_topk(features, k)
        self._calls += 1
        low = self._low or (self._int8_rows() if self._calls >= 2 else None)  # a one-off call stays dense
        if low is None:
            return self._dense_topk(features, k)
        weight, bias, threads = self.weight.numpy(), self.bias.numpy(), torch.get_num_threads()
        found = []
        for row in features.detach().float().contiguous().numpy():
            probs, logits, idx, n, _, _ = kernel.topk_one(row, low, weight, bias, self.scale, k, threads, most)
            if not 0 <= n <= most:  # NaN features or a wide shortlist: the dense product answers
                return self._dense_topk(features, k)
            found.append((probs, idx, logits))
        return tuple(torch.from_numpy(np.stack(part)) for part in zip(*found))  # type: ignore[return-value]

    def _dense_topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.logits(features)
        top, idx = logits.topk(k, dim=1)
        return (top - logits.logsumexp(1, keepdim=True)).exp(), idx, top


class SplitHead:
    """Candidates in parts, each a :class:`LinearHead` of its own; top k and softmax over all of them.

    Rows of different kinds go in different parts: the backbone's own rows and predicted rows
    (which are close to low rank, so their int8 copy can be, :mod:`~kgzsl.inference.head_int8`).
    Each part gives its exact top k and its softmax normaliser (from its best row:
    ``log Z = logit - log p``); the merged top k and probabilities follow.

    Args:
        parts: ``(head, columns)`` pairs: a part's row ``i`` is candidate ``columns[i]``.
        num_classes: Number of candidates in all.
    """

    def __init__(self, parts: list[tuple[LinearHead, torch.Tensor]], num_classes: int) -> None:
        self.parts = [(head, cols.long().cpu()) for head, cols in parts if cols.numel()]
        self.num_classes = int(num_classes)

    @property
    def int8(self) -> bool:
        """Whether any part reads an int8 copy."""
        return any(head.int8 for head, _ in self.parts)

    @property
    def low_rank(self) -> int | None:
        """Rank of the first part's low-rank int8 copy (the predicted rows'), if any."""
        return self.parts[0][0].low_rank

    def path(self, batch: int = 1) -> str:
        """The parts' :meth:`LinearHead.path`, joined by ``+``."""
        return "+".join(head.path(batch) for head, _ in self.parts)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Exact float32 logits ``[B, C]``."""
        out = features.new_empty((features.size(0), self.num_classes), dtype=torch.float32)
        for head, cols in self.parts:
            out[:, cols.to(out.device)] = head.logits(features)
        return out

    def topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`LinearHead.topk`, over the candidates of every part."""
        k = min(int(k), self.num_classes)
        logits, idx, norms = [], [], []
        for head, cols in self.parts:
            p, i, l = head.topk(features, min(k, head.num_classes))
            logits.append(l.float())
            idx.append(cols.to(i.device)[i])
            norms.append(l[:, :1].float() - p[:, :1].float().log())
        log_z = torch.logsumexp(torch.cat(norms, 1), dim=1, keepdim=True)
        top, pos = torch.cat(logits, 1).topk(k, dim=1)
        return (top - log_z).exp(), torch.cat(idx, 1).gather(1, pos), top


class HeadCache:
    """A small thread-safe LRU cache: the least recently used entry goes past ``maxsize``.

    Args:
        maxsize: Most entries kept, besides the kept ones.
        keep: Says which keys are never evicted nor counted (the head over every class, slow to
            build and asked for between any number of label lists); None: every key may go.
    """

    def __init__(self, maxsize: int = 8, keep: Callable[[Hashable], bool] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.keep = keep
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The entry for ``key``, made with ``build()`` (under the cache's lock) when missing."""
        with self._lock:
            if key not in self._entries:
                self._entries[key] = build()
                evictable = [k for k in self._entries if self.keep is None or not self.keep(k)]  # oldest first
                for old in evictable[:max(0, len(evictable) - self.maxsize)]:
                    del self._entries[old]
            self._entries.move_to_end(key)
            return self._entries[key]

    def clear(self) -> None:
        """Forget every entry (the rows changed)."""
        with self._lock:
            self._entries.clear()

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Hold the cache while what its entries are built from changes, then forget every entry: an
        entry is never built from a half-made change (:meth:`get` builds under the same lock)."""
        with self._lock:
            try:
                yield
            finally:
                self._entries.clear()
