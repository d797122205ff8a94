"""kgzsl.inference.head_basis + kgzsl.inference.head_kernel_lowrank: the low-rank int8 copy certifies the float32 top k."""

import numpy as np
import pytest
import torch

import kgzsl.inference.head as head_module
from kgzsl.inference.head import LinearHead
from kgzsl.inference.head_basis import choose_rank, fit_low_rank

from head_helpers import assert_topk_matches_float32, head_features, needs_int8

lowrank = pytest.importorskip("kgzsl.inference.head_kernel_lowrank")


def _low_rank_rows(c: int, d: int, rank: int, seed: int, noise: float = 1e-3) -> torch.Tensor:
    """``[c, d + 1]`` rows ``[W | b]`` of rank ``rank`` plus a little full-rank noise, siblings nearly equal."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, rank, generator=g) @ torch.randn(rank, d, generator=g) / rank ** 0.5
    w += 0.3 * torch.randn(d, generator=g) + noise * torch.randn(c, d, generator=g)
    w[1::2] = w[0::2][: w[1::2].size(0)] + 0.01 * torch.randn(w[1::2].shape, generator=g)
    return torch.cat([w, torch.randn(c, 1, generator=g)], dim=1)


def test_rank_is_the_smallest_multiple_of_64_that_keeps_the_energy():
    ev = torch.cat([torch.full((100,), 1.0), torch.full((156,), 1e-6)])
    assert choose_rank(ev, 256, tol=1e-3) == 128  # 100 directions hold it all: the next multiple of 64
    assert choose_rank(ev, 256, tol=0.5) == 64
    assert choose_rank(torch.ones(256), 256, tol=1e-3) is None  # full rank: more than half of D
    assert choose_rank(torch.zeros(256), 256) is None


def test_fit_gives_none_for_full_rank_or_non_finite_rows():
    assert fit_low_rank(torch.randn(600, 128, generator=torch.Generator().manual_seed(0))) is None
    rows = _low_rank_rows(600, 128, 20, seed=4)[:, :-1]
    assert fit_low_rank(rows) is not None
    rows[3, 5] = float("nan")
    assert fit_low_rank(rows) is None


def test_fit_reconstructs_the_rows():
    rows = _low_rank_rows(700, 256, 40, seed=1)[:, :-1]
    low = fit_low_rank(rows)
    assert low is not None and low.rank == 64 and low.q.shape == (700, 64) and low.group_err.shape == (700, 2)
    v = torch.from_numpy(low.basis).double()
    a = torch.from_numpy(low.q).double() * torch.from_numpy(low.tab[0]).double()[:, None] * torch.from_numpy(
        low.colscale)
    rebuilt = a @ v + torch.from_numpy(low.centre).double()
    rel = (rebuilt - rows.double()).norm(dim=1) / rows.double().norm(dim=1)
    assert rel.max() < 0.02  # int8 coefficients: about 1% of each row
    assert low.eta < 1e-5
    residual = (rows.double() - torch.from_numpy(low.centre).double()) - (
        (rows.double() - torch.from_numpy(low.centre).double()) @ v.T) @ v
    assert (residual.norm(dim=1) <= torch.from_numpy(low.tab[2]).double()).all()  # ||R_i|| rounded up


@pytest.mark.parametrize("kind", ["relu", "gauss", "spiky", "zero", "constant", "negative"])
@pytest.mark.parametrize("noise", [0.0, 0.02])  # 0: the quantisation terms are tight; 0.02: the residual term is
def test_lowrank_bound_holds_for_every_row(kind, noise):
    rows = _low_rank_rows(800, 128, 30, seed=2, noise=noise)
    low = fit_low_rank(rows[:, :-1])
    assert low is not None
    x = head_features(1, 128, seed=3, kind=kind)
    w, b = rows[:, :-1].contiguous(), rows[:, -1].contiguous()
    *_, n, approx, upper = lowrank.topk_lowrank(x.numpy(), low, w.numpy(), b.numpy(), 5, threads=2, debug=True)
    exact = (x.double() @ w.double().T + b.double())[0].numpy()
    assert n >= 5 and approx.shape == (800,)
    assert (np.abs(exact - approx) <= upper - approx).all()


@needs_int8
@pytest.mark.parametrize("seed", range(4))
def test_lowrank_head_topk_equals_float32(seed, monkeypatch):
    monkeypatch.setattr(head_module, "INT8_MIN_ROWS", 100)
    rows = _low_rank_rows(900, 256, 48, seed=10 + seed)
    fast, dense = LinearHead(rows, int8=True), LinearHead(rows, int8=False)
    assert fast.path(1) == "kernel-lowrank" and fast.low_rank == 64
    x = head_features(1, 256, seed=20 + seed, kind="relu" if seed % 2 else "gauss")
    assert_topk_matches_float32(fast, dense, x)


@needs_int8
def test_lowrank_head_falls_back_to_the_dense_product(monkeypatch):
    monkeypatch.setattr(head_module, "INT8_MIN_ROWS", 100)
    rows = _low_rank_rows(600, 128, 20, seed=5)
    head, dense = LinearHead(rows, int8=True), LinearHead(rows, int8=False)
    x = head_features(1, 128, seed=6, kind="gauss")
    w, b = head.weight.numpy(), head.bias.numpy()
    assert lowrank.topk_lowrank(x.numpy(), head._low, w, b, 5, max_rows=0)[3] == lowrank.TOO_WIDE
    x[0, 7] = float("inf")
    assert lowrank.topk_lowrank(x.numpy(), head._low, w, b, 5)[3] == lowrank.NOT_FINITE
    p, i, v = head.topk(x, 3)
    pe, ie, ve = dense.topk(x, 3)
    assert torch.equal(i, ie) and torch.equal(v.isnan(), ve.isnan())


@needs_int8
def test_full_rank_rows_keep_the_full_width_kernel(monkeypatch):
    monkeypatch.setattr(head_module, "INT8_MIN_ROWS", 100)
    rows = torch.randn(500, 129, generator=torch.Generator().manual_seed(8))
    head = LinearHead(rows, int8=True)
    assert head.low_rank is None and head.path(1) == "kernel"
