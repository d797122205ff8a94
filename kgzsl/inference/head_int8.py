"""An int8 copy of the candidate rows, and a table that bounds the error of every int8 score.

:class:`Int8Rows` is 8x smaller than the float32 rows where they are close to low rank, as the
rows a graph network predicts are (DGP's 21,843 ImageNet rows keep 99.9% of their centred energy
in 512 of 1,280 directions), 4x smaller otherwise (:func:`choose_rank`).

The rows are centred on their mean ``μ`` and written on ``V`` (``[r, D]`` float32, orthonormal up
to ``η >= ||V Vᵀ - I||``): the leading directions of the centred rows, or ``V = I`` at full width.
With ``a_i = V (w_i - μ)``, ``R_i = w_i - μ - Vᵀ a_i`` and ``p = V x``, every score splits exactly:

    x · w_i + b_i = x · μ + b_i + p · a_i + x · R_i,    |x · R_i| <= ||x⊥|| ||R_i|| + η' ||p|| ||a_i||

with ``||x⊥||² <= ||x||² - ||p||² / (1 + η)`` and ``η' = η (1 + 2η)``. The coefficients, divided by
their per-column RMS ``c`` on a basis (``c = 1`` at full width), are quantised per row:
``a_i / c = s_i Q_i + δ_i`` (``Q_i`` int8, ``s_i`` float32: ``s_i Q_i`` is exact in float64). The
features ``p̃ = p ⊙ c = st · q + ε`` (``q`` int16) give the int8 score
``ŝ_i = x · μ + b_i + st · s_i (q · Q_i)``, its integer product exact in int32, and by
Cauchy–Schwarz, with the columns split in ``G`` groups,

    |s_i - ŝ_i| <= Σ_g ||p̃_g|| ||δ_ig|| + ||ε|| ||s_i Q_i|| + ||x⊥|| ||R_i|| + η' ||p|| ||a_i||.

The per-row norms are a float32 table rounded up. The features' side is float64: each factor
carries a 1e-9 relative margin, and the last term uses ``||p|| + ||x||`` with ``η >= 1e-9``,
which covers the rounding of ``p`` (float64 errors here are below 1e-12 relative).

Example:
    >>> low = Int8Rows.build(weight, bias)      # weight [C, D], bias [C], float32
    >>> low.rank, low.q.shape                   # (512, (21843, 512)) for DGP's rows
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ENERGY_TOL", "FIXED", "Int8Rows", "choose_rank"]

logger = logging.getLogger(__name__)

ENERGY_TOL = 1e-3
"""Largest fraction of the centred rows' energy left outside the basis (sets the rank)."""
FIXED = 5
"""Leading columns of :attr:`Int8Rows.table`: ``s_i, b_i, ||s_i Q_i||, ||R_i||, η' ||a_i||``; then ``||δ_ig||``."""
_STEP = 64  # the rank is a multiple of this
_CHUNK = 2048  # rows transformed at a time (bounded float64 temporaries)
_REL = 1e-9  # relative margin for float64 rounding


def choose_rank(eigenvalues: torch.Tensor, d: int, tol: float = ENERGY_TOL, rows: int | None = None) -> int | None:
    """Smallest multiple of 64 whose leading directions leave at most ``tol`` of the energy (given the
    centred rows' Gram ``eigenvalues``, descending), or None when the low-rank copy would read as
    many bytes as the full-width one: ``rows · r`` int8 coefficients and the ``r x d`` float32 basis
    against ``rows · d`` (with ``rows`` unknown, ``r`` at most ``d / 2``).

    For 20,844 rows of 1,280 that allows up to rank 1,024. Rows a graph network predicts need 576
    (DGP+SGCN); with ConSE's rows in the mean (weighted means of real rows, which are not low rank)
    768, whose copy is still read faster than the full-width one (B3 head overhead at batch 1,
    dgp-sgcn-conse run: 0.189 against 0.255).
    """
    ev = eigenvalues.double().clamp_min(0)
    total = float(ev.sum())
    if total <= 0.0:
        return None
    most = d // 2 if rows is None else (rows * d - 1) // (rows + 4 * d)  # rows·r + 4·r·d < rows·d
    tail = ev.flip(0).cumsum(0).flip(0) / total  # tail[r]: energy beyond the first r directions
    return next((r for r in range(_STEP, min(most, d - 1) + 1, _STEP) if float(tail[r]) <= tol), None)


def _basis(weight: torch.Tensor, centre: torch.Tensor, tol: float) -> torch.Tensor | None:
    """``[r, D]`` float32 rows spanning the leading directions of the centred rows, or None."""
    d = weight.size(1)
    gram = torch.zeros(d, d, dtype=torch.float64)
    for s in range(0, weight.size(0), _CHUNK):
        part = weight[s:s + _CHUNK].double() - centre
        gram += part.T @ part
    eigenvalues, vectors = torch.linalg.eigh(gram)  # ascending; only picks the basis, the bound uses V as stored
    r = choose_rank(eigenvalues.flip(0), d, tol, rows=weight.size(0))
    return None if r is None else vectors.flip(1)[:, :r].T.float().contiguous()


@dataclass(frozen=True)
class Int8Rows:
    """The int8 copy of ``[C, D]`` rows and the per-row bound table (numpy, C-contiguous).

    Attributes:
        q: ``[C, r]`` int8 coefficients ``Q``.
        table: ``[C, FIXED + G]`` float32: ``s_i``, ``b_i``, then rounded up ``||s_i Q_i||``,
            ``||R_i||``, ``η' ||a_i||`` and ``||δ_ig||`` (see :data:`FIXED`).
        basis: ``[r, D]`` float32 ``V``, or ``[0, D]`` for the full-width copy (``V = I``).
        centre: ``[D]`` float32 mean row ``μ``.
        colscale: ``[r]`` float64 column scales ``c`` (ones at full width).
        eta: ``η``, bound on ``||V Vᵀ - I||`` (0 at full width).
    """

    q: np.ndarray
    table: np.ndarray
    basis: np.ndarray
    centre: np.ndarray
    colscale: np.ndarray
    eta: float

    @property
    def rank(self) -> int | None:
        """Rank r of the basis, None for the full-width copy."""
        return self.basis.shape[0] or None

    @classmethod
    def build(cls, weight: torch.Tensor, bias: torch.Tensor, tol: float | None = ENERGY_TOL) -> Int8Rows:
        """Quantise ``weight`` (``[C, D]`` float32, CPU, finite, any strides) with its ``bias`` (``[C]``).

        Args:
            weight: Candidate rows.
            bias: Their biases.
            tol: Energy left outside a low-rank basis (:data:`ENERGY_TOL`); None keeps full width.
        """
        c, d = weight.shape
        centre = (sum(weight[s:s + _CHUNK].double().sum(0) for s in range(0, c, _CHUNK)) / c).float()
        mu = centre.double()
        basis = None if tol is None else _basis(weight, mu, tol)
        r = d if basis is None else basis.size(0)
        eta = 0.0
        if basis is not None:
            v = basis.double()
            eta = max(float(torch.linalg.matrix_norm(v @ v.T - torch.eye(r, dtype=torch.float64))) * (1 + 1e-6), 1e-9)
        groups = math.gcd(r, 16)

        def coefficients(s: int) -> tuple[torch.Tensor, torch.Tensor]:
            """``a`` and ``||R||`` of rows ``s .. s + _CHUNK`` (float64)."""
            wc = weight[s:s + _CHUNK].double() - mu
            if basis is None:
                return wc, torch.zeros(wc.size(0), dtype=torch.float64)
            a = wc @ v.T
            return a, (wc - a @ v).norm(dim=1)

        colscale = torch.ones(r, dtype=torch.float64)
        if basis is not None:  # coefficients on the leading directions are larger: even out their int8 error
            sq = torch.zeros(r, dtype=torch.float64)
            for s in range(0, c, _CHUNK):
                sq += coefficients(s)[0].square().sum(0)
            colscale = (sq / c).sqrt().clamp_min(1e-30)
        q = torch.empty(c, r, dtype=torch.int8)
        table, up = torch.empty(c, FIXED + groups), torch.tensor(float("inf"))
        for s in range(0, c, _CHUNK):
            a, residual = coefficients(s)
            scaled = a / colscale
            row_scale = (scaled.abs().amax(1) / 127.0).clamp_min(1e-30).float().double()  # s_i is a float32
            qq = torch.round(scaled / row_scale[:, None]).clamp_(-127, 127)
            approx = qq * row_scale[:, None]
            q[s:s + _CHUNK] = qq.to(torch.int8)
            delta = (scaled - approx).view(a.size(0), groups, r // groups).norm(dim=2)
            table[s:s + _CHUNK, 0] = row_scale.float()
            table[s:s + _CHUNK, 1] = bias[s:s + _CHUNK]
            norms = torch.cat([approx.norm(dim=1, keepdim=True), residual[:, None],
                               eta * (1 + 2 * eta) * a.norm(dim=1, keepdim=True), delta], 1)
            table[s:s + _CHUNK, 2:] = torch.nextafter((norms * (1 + _REL)).float(), up)  # rounded up
        logger.debug("int8 head: %d rows, %s", c, "full width" if basis is None else f"rank {r} of {d}")
        return cls(q.numpy(), table.numpy(), np.zeros((0, d), np.float32) if basis is None else basis.numpy(),
                   centre.numpy(), colscale.numpy(), eta)
