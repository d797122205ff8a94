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
   and its certified error bound (Cauchy–Schwarz on both quantisations, see :mod:`kgzsl.inference.head`),
   while keeping, per chunk of rows, the k best lower bounds and an online softmax normaliser;
3. the rows whose upper bound reaches the k-th best lower bound are rescored exactly (float64
   accumulation of the float32 rows) and the top k is taken among them.

The table ``tab`` ``[6, C]`` holds per row, in float32: ``scale, Σ Q, b, ||w - ŵ||, |Σ(w - ŵ)|, ||ŵ||`` with
``ŵ = scale · Q`` (exact in float64) and the three norms rounded up (built by
:class:`kgzsl.inference.head.LinearHead`).

Example:
    >>> probs, logits, idx, n, _, _ = topk_one(x[None], q_rows, tab, rows, bias, 5, threads=2)
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np

from kgzsl.inference.head_kernel_parts import (LOCK, NOT_FINITE, TOO_WIDE, _AHEAD, _BLOCK, _FAST, _REL, _absorb, _prefetch_nta,
                                     _rescore, _setup, _shortlist, _top, scratch, set_threads)

__all__ = ["topk_one", "set_threads", "NOT_FINITE", "TOO_WIDE"]

logger = logging.getLogger(__name__)


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

    approx, upper, best, ncand, zmax, zsum, size = _setup(c, nchunks, k, debug)
    for ch in numba.prange(nchunks):
        c0 = ch * size
        c1 = min(c, c0 + size)
        top = best[ch]
        accs = np.empty(_BLOCK, np.int32)
        av = np.empty(_BLOCK)
        ev = np.empty(_BLOCK)
        pos = c0  # the chunk's candidates go to work_*[c0:]
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
            pos, m, z = _absorb(av, ev, nb, b0, bmax, reach, top, k, work_i, work_f, pos, m, z, debug, approx, upper)
        ncand[ch] = pos - c0
        zmax[ch] = m
        zsum[ch] = z

    n = _shortlist(k, size, best, work_i, work_f, ncand)
    if n > max_rows:
        return TOO_WIDE, none, none, np.empty((1, 0), np.int64), approx, upper
    exact = _rescore(x, rows, bias, work_i[1], n)
    probs, logits, idx = _top(exact, work_i[1], work_f[2], k, zmax, zsum)
    return n, probs, logits, idx, approx, upper

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
