"""One image against every int8 candidate row in a single compiled pass (the batch-1 head).

At batch 1 the head's cost is reading the int8 rows (28 MB for 21,843 × 1,280) once per image,
plus whatever runs around that read. As a chain of tensor ops, the quantisation, the error bound,
the shortlist and the softmax normaliser are ~35 small ops whose code and data are cold after each
backbone pass: they cost as much as the read itself. This module does all of it in one parallel
numba kernel (compiled once, cached on disk), so a batch-1 prediction costs little more than
streaming the int8 rows:

1. quantise the features ``x`` to 255 levels over ``[min x, max x]`` (zeros stay exact) and measure
   the quantisation error ``||x - x̂||`` exactly;
2. for every row, the exact integer product ``q · Q_i``, the approximate logit ``ŝ_i = x̂ · ŵ_i + b_i``
   and its certified error bound (Cauchy–Schwarz on both quantisations, see :mod:`kgzsl.head`),
   while keeping, per chunk of rows, the k best lower bounds and an online softmax normaliser;
3. the rows whose upper bound reaches the k-th best lower bound are rescored exactly (float64
   accumulation of the float32 rows) and the top k is taken among them.

The table ``tab`` ``[6, C]`` holds per row, in float32: ``scale, Σ Q, b, ||w - ŵ||, |Σ(w - ŵ)|, ||ŵ||`` with
``ŵ = scale · Q`` (exact in float64) and the three norms rounded up (built by
:class:`kgzsl.head.LinearHead`).

Example:
    >>> probs, logits, idx, n, _, _ = topk_one(x[None], q_rows, tab, rows, bias, 5, threads=2)
"""

from __future__ import annotations

import logging
import math
import threading

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["topk_one", "set_threads", "NOT_FINITE", "TOO_WIDE"]

logger = logging.getLogger(__name__)

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
def _bounds(accs, tab, b0, nb, lo, step, dev, am, err, floor, av, ev):  # pragma: no cover - compiled
    """Int8 logits ``av`` and bounds ``ev`` of rows ``b0 .. b0 + nb``; their max and whether any reaches ``floor``.

    All inputs are finite here, so full fast-math changes no result beyond rounding within the
    ``_REL`` margin.
    """
    bmax = -1e308
    reach = 0
    for t in range(nb):
        i = b0 + t
        scale = np.float64(tab[0, i])
        t1 = lo * (scale * np.float64(tab[1, i]))
        t2 = step * scale * accs[t]
        b = np.float64(tab[2, i])
        a = t1 + t2 + b
        e = (dev * np.float64(tab[3, i]) + am * np.float64(tab[4, i]) + err * np.float64(tab[5, i])
             + _REL * (abs(t1) + abs(t2) + abs(b)) + 1e-300)
        av[t] = a
        ev[t] = e
        bmax = max(bmax, a)
        reach += a + e >= floor
    return bmax, reach > 0


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


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=_FAST)
def _kernel(features, q_rows, tab, rows, bias, k, nchunks, max_rows, debug, work_i, work_f):  # pragma: no cover - compiled
    x = features[0]
    c, d = q_rows.shape
    none = np.empty((1, 0), np.float32)
    lo = np.float64(x[0])
    hi = lo
    total = 0.0
    for j in range(d):
        v = np.float64(x[j])
        if not math.isfinite(v):
            return NOT_FINITE, none, none, np.empty((1, 0), np.int64), np.empty(0), np.empty(0)
        lo = min(lo, v)
        hi = max(hi, v)
        total += v
    mean = total / d
    step = (hi - lo) / 254.0
    inv = 1.0 / step if step > 0.0 else 0.0
    q = np.empty(d, np.uint8)
    err = 0.0
    dev = 0.0
    for j in range(d):
        v = np.float64(x[j])
        level = min(max(math.floor((v - lo) * inv + 0.5), 0.0), 254.0)
        q[j] = np.uint8(level)
        e = v - (lo + step * level)
        err += e * e
        u = v - mean
        dev += u * u
    err = math.sqrt(err) * (1.0 + _REL)
    dev = math.sqrt(dev) * (1.0 + _REL)
    am = abs(mean)

    approx = np.empty(c if debug else 0)
    upper = np.empty(c if debug else 0)
    best = np.full((nchunks, k), -np.inf)  # per chunk, the k best lower bounds, ascending
    cand = work_i[0]  # per chunk, rows that reached the chunk's floor when scored
    cand_a = work_f[0]
    cand_u = work_f[1]
    ncand = np.zeros(nchunks, np.int64)
    zmax = np.full(nchunks, -np.inf)
    zsum = np.zeros(nchunks)
    size = (c + nchunks - 1) // nchunks
    for ch in numba.prange(nchunks):
        c0 = ch * size
        c1 = min(c, c0 + size)
        top = best[ch]
        accs = np.empty(_BLOCK, np.int32)
        av = np.empty(_BLOCK)
        ev = np.empty(_BLOCK)
        nc = 0
        m = -np.inf
        z = 0.0
        for b0 in range(c0, c1, _BLOCK):
            nb = min(_BLOCK, c1 - b0)
            for t in range(nb):  # the integer products: the int8 rows stream through here
                if b0 + t + _AHEAD < c1:
                    for j in range(0, d, 64):
                        _prefetch_nta(q_rows, b0 + t + _AHEAD, j)
                acc = np.int32(0)
                for j in range(d):
                    acc += np.int32(q[j]) * np.int32(q_rows[b0 + t, j])
                accs[t] = acc
            bmax, reach = _bounds(accs, tab, b0, nb, lo, step, dev, am, err, top[0], av, ev)
            if debug:
                for t in range(nb):
                    approx[b0 + t] = av[t]
                    upper[b0 + t] = av[t] + ev[t]
            if reach:  # some row of the block reaches the chunk's floor: rare once it has risen
                nc = _keep(av, ev, nb, b0, top, k, cand, cand_a, cand_u, c0 + nc) - c0
            if bmax > m:  # softmax normaliser, relative to the chunk's running maximum
                z *= _exp_neg(m - bmax)
                m = bmax
            z += _exp_sum(av, nb, m)
        ncand[ch] = nc
        zmax[ch] = m
        zsum[ch] = z

    n = _shortlist(k, size, best, work_i, work_f, ncand)
    if n > max_rows:
        return TOO_WIDE, none, none, np.empty((1, 0), np.int64), approx, upper
    exact = _rescore(x, rows, bias, work_i[1], n)
    probs, logits, idx = _top(exact, work_i[1], work_f[2], k, zmax, zsum)
    return n, probs, logits, idx, approx, upper


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


def topk_one(features: np.ndarray, q_rows: np.ndarray, tab: np.ndarray, rows: np.ndarray, bias: np.ndarray,
             k: int, threads: int = 1, max_rows: int | None = None, debug: bool = False
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """The k best rows for one feature vector, certified by the int8 bound.

    Args:
        features: ``[1, D]`` float32 features (C-contiguous).
        q_rows: ``[C, D]`` int8 rows (per-row symmetric quantisation).
        tab: ``[6, C]`` float32 per-row table (see the module docstring).
        rows: ``[C, D]`` float32 rows, for the exact rescoring.
        bias: ``[C]`` float32 biases.
        k: How many rows (1 <= k <= C).
        threads: Threads for the pass over the rows.
        max_rows: Give up (return :data:`TOO_WIDE`) when more rows than this need rescoring.
        debug: Also return every row's int8 logit and upper bound (for tests).

    Returns:
        ``(probabilities, logits, indices, n, approx, upper)``: the first three ``[1, k]``, best
        first; ``n`` the number of rescored rows, or :data:`NOT_FINITE` / :data:`TOO_WIDE`;
        ``approx`` and ``upper`` ``[C]`` with ``debug``, else empty.
    """
    c = q_rows.shape[0]
    limit = c if max_rows is None else int(max_rows)
    with LOCK:
        threads = set_threads(threads)
        n, probs, logits, idx, approx, upper = _kernel(features, q_rows, tab, rows, bias, int(k), 4 * threads,
                                                       limit, bool(debug), *scratch(c))
    return probs, logits, idx, int(n), approx, upper
