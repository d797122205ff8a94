"""The batch-1 pass over a low-rank int8 copy of the rows (:mod:`kgzsl.inference.head_basis`).

Same contract as :func:`kgzsl.inference.head_kernel.topk_one` (certified shortlist, exact rescoring of the
float32 rows, online softmax normaliser), but each row costs an ``r``-wide product instead of a
``D``-wide one: for DGP's 21,843 ImageNet rows, 15.6 MB read per image (11.2 MB of them int8
coefficients) instead of 28 MB.

1. project: ``p = V x`` (float64), ``||x⊥||`` bounded from ``||x||² - ||p||²``, ``p ⊙ c`` quantised
   symmetrically to int16 (its error measured exactly);
2. every row: the exact integer product, its approximate logit and the bound of
   :mod:`kgzsl.inference.head_basis`; the rest as in :mod:`kgzsl.inference.head_kernel`.

Example:
    >>> probs, logits, idx, n, _, _ = topk_lowrank(x[None], low, rows, bias, 5, threads=2)
"""

from __future__ import annotations

import math

import numba
import numpy as np

from kgzsl.inference.head_basis import LowRankRows
from kgzsl.inference.head_kernel_parts import (LOCK, NOT_FINITE, TOO_WIDE, _AHEAD, _BLOCK, _FAST, _REL, _absorb, _prefetch_nta,
                                     _rescore, _setup, _shortlist, _top, scratch, set_threads)

__all__ = ["topk_lowrank"]


@numba.njit(cache=True, nogil=True, inline="always", fastmath=True)
def _bounds(accs, gerr, tab, bias, b0, nb, st, xm, xm_abs, pn, perr, xperp, pxn, floor, av, ev):  # pragma: no cover
    """Int8 logits ``av`` and bounds ``ev`` of rows ``b0 .. b0 + nb``; their max and whether any reaches
    ``floor`` (inputs finite)."""
    bmax = -1e308
    reach = 0
    ng = pn.shape[0]
    for t in range(nb):
        i = b0 + t
        e = 0.0
        for g in range(ng):
            e += pn[g] * np.float64(gerr[i, g])
        b = np.float64(bias[i])
        v = st * np.float64(tab[0, i]) * np.float64(accs[t])
        a = xm + b + v
        e += (perr * np.float64(tab[1, i]) + xperp * np.float64(tab[2, i]) + pxn * np.float64(tab[3, i])
              + _REL * (xm_abs + abs(b) + abs(v)) + 1e-300)
        av[t] = a
        ev[t] = e
        bmax = max(bmax, a)
        reach += a + e >= floor
    return bmax, reach > 0


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=_FAST)
def _project(x, basis):  # pragma: no cover - compiled
    p = np.empty(basis.shape[0])
    for j in numba.prange(basis.shape[0]):
        acc = 0.0
        for t in range(x.shape[0]):
            acc += np.float64(basis[j, t]) * np.float64(x[t])
        p[j] = acc
    return p


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=_FAST)
def _kernel(features, basis, centre, colscale, eta, q_rows, gerr, tab, rows, bias, k, nchunks, max_rows, debug,
            work_i, work_f):  # pragma: no cover - compiled
    x = features[0]
    c, r = q_rows.shape
    ng = gerr.shape[1]
    gs = r // ng
    none = np.empty((1, 0), np.float32)
    xx = 0.0
    xm = 0.0
    xm_abs = 0.0
    for j in range(x.shape[0]):
        v = np.float64(x[j])
        if not math.isfinite(v):
            return NOT_FINITE, none, none, np.empty((1, 0), np.int64), np.empty(0), np.empty(0)
        xx += v * v
        u = v * np.float64(centre[j])
        xm += u
        xm_abs += abs(u)
    p = _project(x, basis)
    pp = 0.0
    for j in range(r):
        pp += p[j] * p[j]
    # ||x⊥||² <= ||x||² - ||p||² + η||p||², plus 1e-9 ||x||² for the rounding of p, ||x||² and ||p||²
    xperp = math.sqrt(max(xx - pp + eta * pp + 1e-9 * xx, 0.0)) * (1.0 + _REL)
    pxn = (math.sqrt(pp) + math.sqrt(xx)) * (1.0 + _REL)
    pn = np.empty(ng)
    pmax = 0.0
    for g in range(ng):
        s2 = 0.0
        for j in range(g * gs, g * gs + gs):
            p[j] *= colscale[j]
            s2 += p[j] * p[j]
            pmax = max(pmax, abs(p[j]))
        pn[g] = math.sqrt(s2) * (1.0 + _REL)
    lev = float(min(32767, 2147483647 // (127 * r)))  # int32 sums of r products cannot overflow
    st = pmax / lev
    inv = 1.0 / st if st > 0.0 else 0.0
    qp = np.empty(r, np.int16)
    perr = 0.0
    for j in range(r):
        level = min(max(math.floor(p[j] * inv + 0.5), -lev), lev)
        qp[j] = np.int16(level)
        e = p[j] - st * level
        perr += e * e
    perr = math.sqrt(perr) * (1.0 + _REL)

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
            for t in range(nb):  # the integer products: the int8 coefficients stream through here
                i = b0 + t
                if i + _AHEAD < c1:
                    for j in range(0, r, 64):
                        _prefetch_nta(q_rows, i + _AHEAD, j)
                acc = np.int32(0)
                for j in range(r):
                    acc += np.int32(qp[j]) * np.int32(q_rows[i, j])
                accs[t] = acc
            bmax, reach = _bounds(accs, gerr, tab, bias, b0, nb, st, xm, xm_abs, pn, perr, xperp, pxn, top[0], av, ev)
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


def topk_lowrank(features: np.ndarray, low: LowRankRows, rows: np.ndarray, bias: np.ndarray, k: int,
                 threads: int = 1, max_rows: int | None = None, debug: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """The k best rows for one feature vector, certified by the low-rank int8 bound.

    Args:
        features: ``[1, D]`` float32 features (C-contiguous).
        low: The low-rank copy of ``rows`` (:func:`kgzsl.inference.head_basis.fit_low_rank`).
        rows: ``[C, D]`` float32 rows, for the exact rescoring.
        bias: ``[C]`` float32 biases.
        k: How many rows (1 <= k <= C).
        threads: Threads for the pass over the rows.
        max_rows: Give up (return :data:`~kgzsl.inference.head_kernel.TOO_WIDE`) when more rows need rescoring.
        debug: Also return every row's int8 logit and upper bound (for tests).

    Returns:
        As :func:`kgzsl.inference.head_kernel.topk_one`.
    """
    c = low.q.shape[0]
    limit = c if max_rows is None else int(max_rows)
    with LOCK:
        threads = set_threads(threads)
        n, probs, logits, idx, approx, upper = _kernel(
            features, low.basis, low.centre, low.colscale, float(low.eta), low.q, low.group_err, low.tab, rows, bias,
            int(k), 4 * threads, limit, bool(debug), *scratch(c))
    return probs, logits, idx, int(n), approx, upper
