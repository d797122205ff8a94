"""What the batch-1 head kernels share (:mod:`kgzsl.inference.head_kernel`, :mod:`kgzsl.inference.head_kernel_lowrank`).

Both stream int8 rows in chunks, one chunk per thread task, and per block of rows: keep the
chunk's k best lower bounds and the rows whose upper bound reaches them (:func:`_keep`), and an
online softmax normaliser (:func:`_exp_sum`, :func:`_exp_neg`). At the end the chunks'
candidates are merged (:func:`_shortlist`), rescored exactly in float64 accumulation of the
float32 rows (:func:`_rescore`) and the top k taken with its probabilities (:func:`_top`). The
kernels run one at a time under :data:`LOCK` and reuse the same scratch buffers (:func:`scratch`).
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["LOCK", "NOT_FINITE", "TOO_WIDE", "scratch", "set_threads"]

NOT_FINITE = -1
"""Shortlist size returned when the features contain NaN or inf (the caller scores densely)."""
TOO_WIDE = -2
"""Shortlist size returned when more than ``max_rows`` rows need rescoring (dense is as cheap)."""
LOCK = threading.Lock()  # one call at a time: the kernels use every thread and share their scratch
_work: tuple[np.ndarray, np.ndarray] | None = None
_REL = 1e-9  # relative margin for float64 rounding in the approximate logits
_AHEAD = 2  # rows prefetched ahead of the one being scored
_BLOCK = 128  # rows scored together: the normaliser's exponentials vectorise over a block, and the
# shortlist bookkeeping runs only for blocks where some row reaches the floor
_FAST = {"reassoc", "contract"}  # sums may be reordered (the margins cover it); NaN/inf checks stay valid


@intrinsic
def _prefetch_nta(typingctx, array, i, j):
    """Prefetch ``array[i, j]`` with the non-temporal hint (``llvm.prefetch``, named for llvmlite's LLVM).

    The int8 rows are read once per image: fetched this way they evict less of the backbone's
    weights from L3 (measured on 2 cores: the next backbone pass 0.13 ms faster, the pass itself
    0.04 ms faster).
    """
    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1], args[2]])
        if llvm_binding.llvm_version_info[0] >= 15:  # opaque pointers
            name = "llvm.prefetch.p0"
        else:  # pragma: no cover - older llvmlite
            ptr, name = builder.bitcast(ptr, ir.IntType(8).as_pointer()), "llvm.prefetch.p0i8"
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
                                            name)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 0), ir.Constant(i32, 1)])  # read, NTA, data
        return context.get_dummy_value()

    return types.void(array, i, j), codegen

@numba.njit(cache=True, nogil=True, inline="always", fastmath=_FAST)
def _exp_neg(y):  # pragma: no cover - compiled
    """``exp(y)`` for ``y <= 0`` to ~5e-6 relative, branch-free so that loops vectorise.

    Below -40 it returns exp(-40) (4e-18): for a softmax normaliser that counts as zero.
    """
    u = max(y, -40.0) * 0.015625  # y / 64, in [-0.625, 0]
    p = 1.0 + u * (1.0 + u * (0.5 + u * (1.0 / 6 + u * (1.0 / 24 + u * (1.0 / 120 + u * (1.0 / 720 + u * (
        1.0 / 5040 + u / 40320)))))))
    for _ in range(6):  # (e^(y/64))^64
        p *= p
    return p

@numba.njit(cache=True, nogil=True, inline="always", fastmath=True)
def _exp_sum(av, nb, m):  # pragma: no cover - compiled
    z = 0.0
    for t in range(nb):
        z += _exp_neg(av[t] - m)
    return z

@numba.njit(cache=True, nogil=True, inline="always")
def _dot(x, rows, i):  # pragma: no cover - compiled
    acc = 0.0
    for j in range(x.shape[0]):
        acc += np.float64(x[j]) * np.float64(rows[i, j])
    return acc


@numba.njit(cache=True, nogil=True, inline="always")
def _keep(av, ev, nb, b0, top, k, cand, cand_a, cand_u, pos):  # pragma: no cover - compiled
    """Update the chunk's k best lower bounds ``top`` with a block and append its rows that reach
    the floor to the candidates at ``pos``; returns the new end."""
    for t in range(nb):
        low = av[t] - ev[t]
        if low > top[0]:
            p = 0
            while p + 1 < k and top[p + 1] < low:
                top[p] = top[p + 1]
                p += 1
            top[p] = low
        if av[t] + ev[t] >= top[0]:  # the floor only rises: a superset of the shortlist
            cand[pos] = b0 + t
            cand_a[pos] = av[t]
            cand_u[pos] = av[t] + ev[t]
            pos += 1
    return pos


@numba.njit(cache=True, nogil=True, inline="always")
def _setup(c, nchunks, k, debug):  # pragma: no cover - compiled
    """``(approx, upper, best, ncand, zmax, zsum, size)``: the per-row debug outputs, and per chunk the
    k best lower bounds (ascending), candidate count and normaliser; ``size`` rows per chunk."""
    approx = np.empty(c if debug else 0)
    upper = np.empty(c if debug else 0)
    best = np.full((nchunks, k), -np.inf)
    return (approx, upper, best, np.zeros(nchunks, np.int64), np.full(nchunks, -np.inf), np.zeros(nchunks),
            (c + nchunks - 1) // nchunks)


@numba.njit(cache=True, nogil=True, inline="always", fastmath=_FAST)
def _absorb(av, ev, nb, b0, bmax, reach, top, k, work_i, work_f, pos, m, z, debug, approx, upper):  # pragma: no cover
    """Take in a scored block: debug outputs, the chunk's shortlist (only when some row reaches its
    floor, rare once it has risen) and its softmax normaliser. Returns ``(pos, m, z)``."""
    if debug:
        for t in range(nb):
            approx[b0 + t] = av[t]
            upper[b0 + t] = av[t] + ev[t]
    if reach:
        pos = _keep(av, ev, nb, b0, top, k, work_i[0], work_f[0], work_f[1], pos)
    if bmax > m:  # relative to the chunk's running maximum
        z *= _exp_neg(m - bmax)
        m = bmax
    z += _exp_sum(av, nb, m)
    return pos, m, z


@numba.njit(cache=True, nogil=True, inline="always")
def _shortlist(k, size, best, work_i, work_f, ncand):  # pragma: no cover - compiled
    """Merge the chunks' candidates into ``work_i[1]`` / ``work_f[2]``: the rows whose upper bound
    reaches the k-th best lower bound overall. Returns their number."""
    cand, short = work_i[0], work_i[1]
    cand_a, cand_u, short_a = work_f[0], work_f[1], work_f[2]
    floor = np.sort(best.ravel())[-k]
    n = 0
    for ch in range(ncand.shape[0]):
        for p in range(ch * size, ch * size + ncand[ch]):
            if cand_u[p] >= floor:
                short[n] = cand[p]
                short_a[n] = cand_a[p]
                n += 1
    return n


@numba.njit(cache=True, nogil=True, inline="always")
def _top(exact, short, short_a, k, zmax, zsum):  # pragma: no cover - compiled
    """``(probs, logits, idx)`` ``[1, k]`` from the rescored rows and the chunks' normalisers."""
    n = exact.shape[0]
    order = np.argsort(-exact, kind="mergesort")[:k]
    t0 = exact[order[0]]
    norm = 0.0
    for ch in range(zsum.shape[0]):
        if zsum[ch] > 0.0:
            norm += zsum[ch] * math.exp(zmax[ch] - t0)
    for r in range(n):  # exact logits replace the approximate ones of the rescored rows
        norm += math.exp(exact[r] - t0) - math.exp(short_a[r] - t0)
    kk = order.size
    probs = (np.exp(exact[order] - t0) / norm).astype(np.float32).reshape(1, kk)
    return probs, exact[order].astype(np.float32).reshape(1, kk), short[order].reshape(1, kk)


@numba.njit(parallel=True, cache=True, nogil=True)
def _rescore(x, rows, bias, short, n):  # pragma: no cover - compiled
    """Exact logits (float64 accumulation) of the ``n`` shortlisted rows."""
    exact = np.empty(n)
    if n <= 256:  # a short list: not worth waking the threads
        for r in range(n):
            exact[r] = _dot(x, rows, short[r]) + np.float64(bias[short[r]])
    else:
        for r in numba.prange(n):
            exact[r] = _dot(x, rows, short[r]) + np.float64(bias[short[r]])
    return exact


def scratch(c: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernels' candidate buffers for ``c`` rows (call under :data:`LOCK`), kept between calls:
    fresh pages would be faulted in on every call."""
    global _work
    if _work is None or _work[0].shape[1] < c:
        _work = (np.empty((2, c), np.int64), np.empty((3, c)))
    return _work


def set_threads(n: int) -> int:
    """Use at most ``n`` threads for the kernel (as many as torch uses); returns the count in use."""
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:  # setting costs ~20 us even when unchanged
        numba.set_num_threads(n)
    return n
