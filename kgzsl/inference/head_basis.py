"""A low-rank int8 copy of the candidate rows, for a batch-1 head that reads half the bytes.

The rows a graph network predicts are close to low rank: for DGP's 21,843 ImageNet rows, 512 of
1,280 directions hold 99.9% of the energy of the centred rows. With ``μ`` the mean row, ``V`` an
``[r, D]`` float32 basis of those directions, ``a_i = V(w_i - μ)`` and ``R_i = w_i - μ - Vᵀ a_i``,
every logit splits exactly as

    x · w_i = x · μ + p · a_i - (E p) · a_i + x⊥ · R_i,   p = V x,  x⊥ = x - Vᵀ p,  E = V Vᵀ - I

so one image costs a float64 projection of ``x`` (``r × D``) and an ``r``-wide int8 product per row
instead of a ``D``-wide one. The coefficients are divided by their per-column RMS ``c`` before a
per-row int8 quantisation (``a_i / c ≈ scale_i · Q_i``; the features carry ``p ⊙ c``), so the
quantisation error is spread evenly over the columns. The error of the int8 logit is bounded by

    Σ_g ||(p ⊙ c)_g|| · ||δ_ig|| + ||p̂ - p ⊙ c|| · ||â_i|| + ||x⊥|| · ||R_i||
        + η (||p|| + ||x||) · ||a_i||

with ``δ_i`` the row's quantisation error split into ``G`` column groups, ``p̂`` the int16 features
and ``η >= ||E||`` (``||x⊥||²`` is bounded by ``||x||² - ||p||² + η ||p||²``). All norms are computed
in float64 and rounded up to float32. :func:`fit_low_rank` returns None when the rows are not low
rank enough for this to pay (more than half of ``D`` directions needed): the full-width int8 rows
serve then.

Example:
    >>> low = fit_low_rank(weight)          # weight: [C, D] float32
    >>> low.rank, low.q.shape               # (512, (21843, 512))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LowRankRows", "fit_low_rank", "ENERGY_TOL"]

logger = logging.getLogger(__name__)

ENERGY_TOL = 1e-3
"""Largest fraction of the centred rows' energy left outside the basis (sets the rank)."""
_STEP = 64  # the rank is a multiple of this
_GROUPS = 16  # column groups of the quantisation-error bound
_CHUNK = 2048  # rows transformed at a time (bounded float64 temporaries)


@dataclass
class LowRankRows:
    """The arrays the low-rank kernel reads (numpy, C-contiguous).

    Attributes:
        basis: ``[r, D]`` float32 rows ``V``, orthonormal up to ``eta``.
        centre: ``[D]`` float32 mean row ``μ``.
        colscale: ``[r]`` float64 column scales ``c`` of the coefficients.
        q: ``[C, r]`` int8 coefficients ``Q`` (``a_i / c ≈ scale_i · Q_i``).
        group_err: ``[C, G]`` float32 ``||δ_ig||``, rounded up.
        tab: ``[4, C]`` float32: ``scale_i``, ``||â_i||``, ``||R_i||`` and ``η ||a_i|| + 1e-10 ||w_i - μ||``
            (multiplied by ``||p|| + ||x||`` in the kernel: the ``E`` term and float64 rounding), the
            last three rounded up.
        eta: Bound on ``||V Vᵀ - I||``.
    """

    basis: np.ndarray
    centre: np.ndarray
    colscale: np.ndarray
    q: np.ndarray
    group_err: np.ndarray
    tab: np.ndarray
    eta: float

    @property
    def rank(self) -> int:
        """Number of basis rows r."""
        return int(self.basis.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes read per image (all arrays)."""
        return sum(a.nbytes for a in (self.basis, self.centre, self.colscale, self.q, self.group_err, self.tab))


def choose_rank(eigenvalues: torch.Tensor, d: int, tol: float = ENERGY_TOL) -> int | None:
    """Smallest multiple of 64 whose leading directions leave at most ``tol`` of the energy, or None
    when that needs more than half of the ``d`` columns.

    Args:
        eigenvalues: Eigenvalues of the centred rows' Gram matrix, descending.
        d: Feature width D.
        tol: Largest energy fraction left out.
    """
    ev = eigenvalues.double().clamp_min(0)
    total = float(ev.sum())
    if total <= 0.0:
        return None
    tail = ev.flip(0).cumsum(0).flip(0) / total  # tail[r]: energy beyond the first r directions
    for r in range(_STEP, d // 2 + 1, _STEP):
        if float(tail[r]) <= tol:
            return r
    return None


def fit_low_rank(weight: torch.Tensor, tol: float = ENERGY_TOL) -> LowRankRows | None:
    """The low-rank int8 copy of ``weight``, or None when the rows are not low rank enough.

    Args:
        weight: ``[C, D]`` float32 rows (CPU).
        tol: Largest energy fraction of the centred rows left outside the basis.

    Returns:
        The arrays of :class:`LowRankRows`, or None.
    """
    c, d = weight.shape
    w32 = weight.detach().float().cpu()
    if not bool(torch.isfinite(w32).all()):  # the full-width pass handles such rows (their bound is not finite)
        return None
    centre = w32.double().mean(0).float()
    gram = torch.zeros(d, d, dtype=torch.float64)
    for s in range(0, c, _CHUNK):
        part = w32[s:s + _CHUNK] - centre
        gram += (part.T @ part).double()
    try:
        eigenvalues, vectors = torch.linalg.eigh(gram)  # only chooses the basis: the bound does not rely on it
    except torch.linalg.LinAlgError as exc:  # pragma: no cover - LAPACK did not converge
        logger.info("no low-rank copy of the rows (%s); the full-width int8 rows serve", exc)
        return None
    r = choose_rank(eigenvalues.flip(0), d, tol)
    if r is None:
        return None
    basis = vectors.flip(1)[:, :r].T.contiguous().float()
    v = basis.double()
    # η >= ||V Vᵀ - I|| (Frobenius), and at least 1e-9 so that η ||x|| ||a_i|| also covers the float64
    # rounding of the projections (~1e-12 relative)
    eta = max(float(torch.linalg.matrix_norm(v @ v.T - torch.eye(r, dtype=torch.float64))) * (1 + 1e-6), 1e-9)
    mu = centre.double()
    sq = torch.zeros(r, dtype=torch.float64)
    for s in range(0, c, _CHUNK):
        sq += ((w32[s:s + _CHUNK].double() - mu) @ v.T).square().sum(0)
    colscale = (sq / c).sqrt().clamp_min(1e-30)
    groups = min(_GROUPS, r // 32)
    q = torch.empty(c, r, dtype=torch.int8)
    group_err = torch.empty(c, groups)
    tab = torch.empty(4, c)
    up = torch.tensor(float("inf"))
    for s in range(0, c, _CHUNK):
        wc = w32[s:s + _CHUNK].double() - mu
        a = wc @ v.T
        aa = a.square().sum(1)
        ww = wc.square().sum(1)
        # ||R||² = ||wc||² - ||a||² + aᵀ E a, plus a margin for the float64 rounding of a (~1e-11 ||wc||²)
        res = (ww - aa + eta * aa + 1e-10 * ww).clamp_min(0).sqrt()
        scaled = a / colscale
        scale = (scaled.abs().amax(1) / 127.0).float().clamp_min(1e-30)
        qq = torch.round(scaled / scale.double()[:, None]).clamp_(-127, 127)
        approx = qq * scale.double()[:, None]
        q[s:s + _CHUNK] = qq.to(torch.int8)
        delta = (scaled - approx).reshape(-1, groups, r // groups)
        group_err[s:s + _CHUNK] = torch.nextafter(delta.norm(dim=2).float(), up)
        tab[0, s:s + _CHUNK] = scale
        tab[1, s:s + _CHUNK] = torch.nextafter(approx.norm(dim=1).float(), up)
        tab[2, s:s + _CHUNK] = torch.nextafter(res.float(), up)
        tab[3, s:s + _CHUNK] = torch.nextafter(((eta * aa.sqrt() + 1e-10 * ww.sqrt()) * (1 + 1e-9)).float(), up)
    low = LowRankRows(basis.numpy(), centre.numpy(), colscale.numpy(), q.numpy(), group_err.numpy(), tab.numpy(), eta)
    logger.debug("low-rank int8 head: rank %d of %d, %.1f MB read per image", r, d, low.nbytes / 1e6)
    return low
