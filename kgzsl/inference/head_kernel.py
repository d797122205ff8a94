"""One image against every row of an int8 copy (:mod:`kgzsl.inference.head_int8`): the exact top k.

At batch 1 the head's cost is reading the int8 rows once per image plus whatever runs around
that read; as a chain of tensor ops the bookkeeping would cost as much as the read. Here it is
a few compiled numba functions (cached on disk):

1. project the features on the basis (:func:`_project`) and quantise them to int16 (:func:`_prepare`);
2. per part of 4,096 rows: the exact integer product of every row, its int8 score and bound,
   the part's k best lower bounds and its softmax normaliser (:func:`_score`);
3. keep the rows whose upper bound reaches the k-th best lower bound, rescore them exactly
   (float64 sums of the float32 rows) and take the top k (:func:`_finish`).

Steps 1 and 2 run on the calling thread and pool threads (:func:`_in_parallel`). Every buffer
belongs to one call: any number of threads may call :func:`topk_one` at once.

Example:
    >>> probs, logits, idx, n, approx, upper = topk_one(x, int8_rows, weight, bias, 1.0, 5, threads=2)
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from kgzsl.inference.head_int8 import FIXED, Int8Rows

__all__ = ["MAX_K", "topk_one"]

MAX_K = 64
"""Largest k the pass serves (a wider top k is a wide shortlist anyway)."""
_REL = 1e-9  # relative margin for float64 rounding
_PART = 4096  # rows per task; fixed, so results do not depend on the number of threads
_BLOCK = 64  # rows scored together before their bookkeeping
_FAST = {"reassoc", "contract"}  # sums may be reordered (the margins cover it); NaN/inf checks stay valid

_pool: tuple[int, ThreadPoolExecutor] | None = None


def _in_parallel(task: Callable[[int], None], n: int, threads: int) -> None:
    """``task(t)`` for ``t`` in ``range(n)``, on the calling thread and up to ``threads - 1`` pool threads.

    The tasks are numba functions that release the GIL. Plain threads rather than numba's
    ``parallel=True``: its ``workqueue`` layer cannot take parallel calls from several threads at
    once, and its ``omp`` layer brings a second OpenMP runtime whose spinning threads fight
    torch's for the cores.
    """
    global _pool
    claim = itertools.count()  # next() on it is atomic: each task runs once, on whichever thread takes it

    def run() -> None:
        t = next(claim)
        while t < n:
            task(t)
            t = next(claim)

    if _pool is None or _pool[0] != os.getpid():  # a forked child makes its own pool
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="kgzsl-head"))
    helpers = [_pool[1].submit(run) for _ in range(min(threads, n) - 1)]
    run()  # the calling thread works too, and finishes whatever no helper has taken
    for helper in helpers:
        if not helper.cancel():  # a cancelled helper never started: nothing was left for it
            helper.result()


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _project(x, basis, j0, j1, p):  # pragma: no cover - compiled
    """``p[j0:j1] = (V x)[j0:j1]``, float64 sums."""
    for j in range(j0, j1):
        acc = 0.0
        for t in range(x.shape[0]):
            acc += np.float64(basis[j, t]) * np.float64(x[t])
        p[j] = acc


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
    c, r, threads = low.q.shape[0], low.basis.shape[0], max(1, int(threads))
    p = x.astype(np.float64)
    if r:
        p = np.empty(r)
        step = -(-r // threads)
        _in_parallel(lambda t: _project(x, low.basis, t * step, min(r, t * step + step), p), threads, threads)
    q, st, base, u = _prepare(x, p, low.centre, low.colscale, low.eta, low.table.shape[1] - FIXED)
    if q.size == 0:
        return np.empty(0, np.float32), np.empty(0, np.float32), np.empty(0, np.int64), -1, p[:0], p[:0]
    parts = -(-c // _PART)
    approx, upper, stats = np.empty(c), np.empty(c), np.empty((parts, k + 2))
    _in_parallel(lambda t: _score(q, st, base, u, low.q, low.table, scale, t * _PART, min(c, t * _PART + _PART),
                                  approx, upper, stats[t]), parts, threads)
    n, probs, logits, idx = _finish(x, weight, bias, float(scale), approx, upper, stats,
                                    c if max_rows is None else int(max_rows))
    return probs, logits, idx, int(n), approx, upper
