"""One image against every row of an int8 copy (:mod:`kgzsl.inference.head_int8`): the exact top k.

As a chain of tensor ops the bookkeeping around the int8 read would cost as much as the read.
Here it is a few compiled numba functions (cached on disk):

1. project the features on the basis (:func:`_project`) and quantise them to int16 (:func:`_prepare`);
2. per part of 4,096 rows: every row's exact integer product, int8 score and bound, the part's
   k best lower bounds and softmax normaliser (:func:`_score`, in parallel: :func:`_score_parts`);
3. keep the rows whose upper bound reaches the k-th best lower bound, rescore them exactly
   (float64 sums of the float32 rows) and take the top k (:func:`_finish`).

Numba's threading layer is set to a thread-safe one (``omp`` or ``tbb``; the default ``workqueue``
aborts when two threads launch parallel code at once; where only it loads, steps 1-2 run
single-threaded). Every buffer belongs to one call: threads may call :func:`topk_one` at once
(a call that overlaps another runs on one thread: the cores are busy anyway).

Example:
    >>> probs, logits, idx, n, approx, upper = topk_one(x, int8_rows, weight, bias, 1.0, 5, threads=2)
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np

from kgzsl.inference.head_int8 import FIXED, Int8Rows

__all__ = ["MAX_K", "PARALLEL", "topk_one"]

logger = logging.getLogger(__name__)

MAX_K = 64
"""Largest k the pass serves (a wider top k is a wide shortlist anyway)."""
_REL = 1e-9  # relative margin for float64 rounding
_PART = 4096  # rows per task; fixed, so results do not depend on the number of threads
_BLOCK = 64  # rows scored together before their bookkeeping
_FAST = {"reassoc", "contract"}  # sums may be reordered (the margins cover it); NaN/inf checks stay valid

_calls: list[None] = []  # one entry per call in progress (list.append and .pop are atomic)

if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "threadsafe"
try:
    numba.get_num_threads()  # loads the threading layer now
    PARALLEL = numba.threading_layer() != "workqueue"
except ValueError as exc:  # no thread-safe layer here
    numba.config.THREADING_LAYER, PARALLEL = "default", False
    logger.info("numba has no thread-safe threading layer (%s); the int8 head runs single-threaded", exc)


@numba.njit(nogil=True, cache=True, parallel=True, fastmath=_FAST)
def _project(x, basis):  # pragma: no cover - compiled
    """``p = V x`` (float64 sums), or ``x`` itself when ``V = I``."""
    p = x.astype(np.float64) if basis.shape[0] == 0 else np.empty(basis.shape[0])
    for j in numba.prange(basis.shape[0]):
        acc = 0.0
        for t in range(x.shape[0]):
            acc += np.float64(basis[j, t]) * np.float64(x[t])
        p[j] = acc
    return p


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _prepare(x, p, centre, colscale, eta, groups):  # pragma: no cover - compiled
    """``(q, st, base, u)`` from ``x`` and ``p = V x``: int16 features ``q`` (empty when ``x`` is not finite),
    their step, ``x · μ`` and the factors of the bound (matching the table's columns from ``FIXED - 3`` on)."""
    xx = base = 0.0
    for t in range(x.shape[0]):
        v = np.float64(x[t])
        if not math.isfinite(v):
            return np.empty(0, np.int16), 0.0, 0.0, np.empty(0)
        xx += v * v
        base += v * np.float64(centre[t])
    r = p.shape[0]
    pp = np.sum(p * p)
    u = np.empty(3 + groups)
    u[1] = math.sqrt(max(xx - pp / (1.0 + eta), 0.0) + _REL * xx) if r < x.shape[0] else 0.0  # ||x⊥||
    u[2] = math.sqrt(pp) + math.sqrt(xx)
    p *= colscale
    for g in range(groups):
        u[3 + g] = math.sqrt(np.sum(p[g * (r // groups):(g + 1) * (r // groups)] ** 2))
    levels = float(min(32767, 2147483647 // (127 * r)))  # int32 sums of r products cannot overflow
    st = np.max(np.abs(p)) / levels
    level = np.minimum(np.maximum(np.floor(p * (1.0 / st if st > 0.0 else 0.0) + 0.5), -levels), levels)
    u[0] = math.sqrt(np.sum((p - st * level) ** 2)) + 2 * _REL * math.sqrt(np.sum(p * p))
    return level.astype(np.int16), st, base, u * (1.0 + _REL)


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _score(q, st, base, u, rows, table, scale, c0, c1, approx, upper, stats):  # pragma: no cover - compiled
    """Rows ``c0 .. c1``: int8 scores ``approx`` and upper bounds ``upper``; ``stats`` gets the part's
    k best lower bounds (ascending) and the ``(max, sum)`` of its softmax normaliser of ``scale · approx``."""
    k = stats.shape[0] - 2
    top = stats[:k]
    top[:] = -np.inf
    m, z = -np.inf, 0.0
    acc = np.empty(_BLOCK, np.int32)
    for b0 in range(c0, c1, _BLOCK):
        b1 = min(b0 + _BLOCK, c1)
        for i in range(b0, b1):  # the int8 rows stream through here
            s = np.int32(0)
            for j in range(rows.shape[1]):
                s = np.int32(s + np.int32(q[j]) * np.int32(rows[i, j]))  # numba would widen `+=` to int64
            acc[i - b0] = s
        for i in range(b0, b1):
            b, v = np.float64(table[i, 1]), st * np.float64(table[i, 0]) * np.float64(acc[i - b0])
            e = _REL * (abs(base) + abs(b) + abs(v)) + 1e-300
            for g in range(u.shape[0]):
                e += u[g] * np.float64(table[i, FIXED - 3 + g])
            approx[i], upper[i] = base + b + v, base + b + v + e
        for i in range(b0, b1):  # keep the k best lower bounds (rarely touched once they have risen)
            low = 2 * approx[i] - upper[i]
            if low > top[0]:
                p = 0
                while p + 1 < k and top[p + 1] < low:
                    top[p] = top[p + 1]
                    p += 1
                top[p] = low
        y = scale * np.max(approx[b0:b1])
        if y > m:
            z, m = z * math.exp(m - y), y
        for i in range(b0, b1):
            z += math.exp(scale * approx[i] - m)
    stats[k], stats[k + 1] = m, z


@numba.njit(nogil=True, cache=True, parallel=True, fastmath=_FAST)
def _score_parts(q, st, base, u, rows, table, scale, approx, upper, stats):  # pragma: no cover - compiled
    """:func:`_score` over every part of :data:`_PART` rows, in parallel."""
    for t in numba.prange(stats.shape[0]):
        c1 = min(rows.shape[0], t * _PART + _PART)
        _score(q, st, base, u, rows, table, scale, t * _PART, c1, approx, upper, stats[t])


# where no thread-safe layer loads (not cached: the cache would not tell them from the parallel builds)
_serial = {f: numba.njit(nogil=True, fastmath=_FAST)(f.py_func) for f in (_project, _score_parts)}


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _finish(x, weight, bias, scale, approx, upper, stats, max_rows):  # pragma: no cover - compiled
    """``(n, probs, logits, idx)``: the shortlist's size and, unless it exceeds ``max_rows``, the top k."""
    k = stats.shape[1] - 2
    floor = np.sort(stats[:, :k].ravel())[-k]
    short = np.nonzero(upper >= floor)[0]
    n = short.shape[0]
    if n > max_rows:
        return n, np.empty(0, np.float32), np.empty(0, np.float32), short[:0]
    exact = np.empty(n)
    for t in range(n):
        acc = np.float64(bias[short[t]])
        for j in range(x.shape[0]):
            acc += np.float64(x[j]) * np.float64(weight[short[t], j])
        exact[t] = scale * acc
    order = np.argsort(-exact, kind="mergesort")[:k]
    t0 = exact[order[0]]
    norm = 0.0
    for s in range(stats.shape[0]):
        norm += stats[s, k + 1] * math.exp(stats[s, k] - t0)
    for t in range(n):  # the exact logits replace the int8 ones of the rescored rows
        norm += math.exp(exact[t] - t0) - math.exp(scale * approx[short[t]] - t0)
    return n, (np.exp(exact[order] - t0) / norm).astype(np.float32), exact[order].astype(np.float32), short[order]


def topk_one(x: np.ndarray, low: Int8Rows, weight: np.ndarray, bias: np.ndarray, scale: float, k: int,
             threads: int = 1, max_rows: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """The k best rows for one feature vector, certified by the int8 bound.

    Args:
        x: ``[D]`` float32 features.
        low: The int8 copy of ``weight``.
        weight: ``[C, D]`` float32 rows (any strides), for the exact rescoring.
        bias: ``[C]`` float32 biases.
        scale: Positive logit scale: logits are ``scale · (x · w_i + b_i)``.
        k: How many rows (1 <= k <= min(C, :data:`MAX_K`)).
        threads: Threads for steps 1 and 2 (the calling one included).
        max_rows: Stop before rescoring when more rows than this need it.

    Returns:
        ``(probabilities, logits, indices, n, approx, upper)``: the first three ``[k]``, best first,
        empty when ``n`` (the shortlist size) exceeds ``max_rows`` or is -1 (``x`` not finite);
        ``approx`` and ``upper`` are every row's int8 score and upper bound (unscaled, ``[C]``).
    """
    c = low.q.shape[0]
    project, score_parts = (_project, _score_parts) if PARALLEL else (_serial[_project], _serial[_score_parts])
    _calls.append(None)
    try:
        if PARALLEL:  # numba's thread count is the calling thread's own
            threads = 1 if len(_calls) > 1 else max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
            if numba.get_num_threads() != threads:
                numba.set_num_threads(threads)
        q, st, base, u = _prepare(x, project(x, low.basis), low.centre, low.colscale, low.eta,
                                  low.table.shape[1] - FIXED)
        if q.size == 0:
            return np.empty(0, np.float32), np.empty(0, np.float32), np.empty(0, np.int64), -1, u, u
        approx, upper, stats = np.empty(c), np.empty(c), np.empty((-(-c // _PART), k + 2))
        score_parts(q, st, base, u, low.q, low.table, scale, approx, upper, stats)
    finally:
        _calls.pop()
    n, probs, logits, idx = _finish(x, weight, bias, float(scale), approx, upper, stats,
                                    c if max_rows is None else int(max_rows))
    return probs, logits, idx, int(n), approx, upper
