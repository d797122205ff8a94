"""kgzsl.inference.head_int8 + head_kernel: the int8 copy, and a bound that holds for every row."""

import numpy as np
import pytest
import torch
from head_helpers import head_features, head_rows, low_rank_rows, needs_int8

from kgzsl.inference.head_int8 import FIXED, Int8Rows, choose_rank


def test_rank_is_the_smallest_multiple_of_64_that_keeps_the_energy():
    ev = torch.cat([torch.full((100,), 1.0), torch.full((156,), 1e-6)])
    assert choose_rank(ev, 256, tol=1e-3) == 128  # 100 directions hold it all: the next multiple of 64
    assert choose_rank(ev, 256, tol=0.5) == 64
    assert choose_rank(torch.ones(256), 256, tol=1e-3) is None  # full rank: more than half of D
    assert choose_rank(torch.zeros(256), 256) is None
    # with the row count known, a rank pays while rows·r + 4·r·d < rows·d: up to 1,024 for 20,844 x 1,280
    slow = torch.cat([torch.ones(760), torch.zeros(520)])  # 760 directions hold it all
    assert choose_rank(slow, 1280) is None and choose_rank(slow, 1280, rows=20844) == 768
    assert choose_rank(slow, 1280, rows=4096) is None  # few rows: the basis would cost more than it saves


def test_full_rank_rows_keep_full_width():
    rows = head_rows(600, 128, seed=0)
    low = Int8Rows.build(rows[:, :-1], rows[:, -1])
    assert low.rank is None and low.q.shape == (600, 128) and low.eta == 0.0
    assert low.table.shape == (600, FIXED + 16) and (low.table[:, 3] < 1e-40).all()  # no residual outside V = I


def test_low_rank_copy_reconstructs_the_rows():
    rows = low_rank_rows(700, 256, 40, seed=1)
    w = rows[:, :-1].double()
    low = Int8Rows.build(rows[:, :-1], rows[:, -1])
    assert low.rank == 64 and low.q.shape == (700, 64) and low.basis.shape == (64, 256)
    assert 0 < low.eta < 1e-5
    v, mu = torch.from_numpy(low.basis).double(), torch.from_numpy(low.centre).double()
    a = torch.from_numpy(low.q).double() * torch.from_numpy(low.table[:, :1]).double() * torch.from_numpy(low.colscale)
    rel = ((a @ v + mu) - w).norm(dim=1) / w.norm(dim=1)
    assert rel.max() < 0.02  # int8 coefficients: about 1% of each row
    wc = w - mu
    residual = (wc - (wc @ v.T) @ v).norm(dim=1)
    assert (residual <= torch.from_numpy(low.table[:, 3]).double() * (1 + 1e-6)).all()
    assert torch.equal(torch.from_numpy(low.table[:, 1]), rows[:, -1])  # the biases, exact


@needs_int8
@pytest.mark.parametrize("kind", ["relu", "gauss", "spiky", "zero", "constant", "negative"])
@pytest.mark.parametrize("rows", ["low0", "low2", "full", "outliers"])
def test_bound_holds_for_every_row(kind, rows):
    from kgzsl.inference import head_kernel

    d = 128
    rows = {"low0": low_rank_rows(5000, d, 30, seed=2, noise=0.0),
            "low2": low_rank_rows(5000, d, 30, seed=2, noise=0.02),
            "full": head_rows(5000, d, seed=3), "outliers": head_rows(5000, d, seed=3, outliers=True)}[rows]
    low = Int8Rows.build(rows[:, :-1], rows[:, -1])
    x = head_features(1, d, seed=4, kind=kind)[0]
    w, b = rows[:, :-1].numpy(), rows[:, -1].numpy()
    _, logits, idx, n, approx, upper = head_kernel.topk_one(x.numpy(), low, w, b, 1.0, 5, threads=2)
    exact = (x.double() @ rows[:, :-1].double().T + rows[:, -1].double()).numpy()
    assert (np.abs(exact - approx) <= upper - approx).all() and (upper > approx).all()
    floor = np.sort(2 * approx - upper)[-5]  # the k-th best lower bound
    assert n == (upper >= floor).sum() and 5 <= n < 5000  # exactly the rows that can still be in the top 5
    assert np.array_equal(idx, np.argsort(-exact, kind="stable")[:5])
    np.testing.assert_allclose(logits, exact[idx], rtol=1e-6)


@needs_int8
def test_kernel_gives_way_on_nan_and_wide_shortlists():
    from kgzsl.inference import head_kernel

    rows = head_rows(600, 16, seed=7)
    low = Int8Rows.build(rows[:, :-1], rows[:, -1])
    w, b = rows[:, :-1].numpy(), rows[:, -1].numpy()
    x = head_features(1, 16, seed=8, kind="gauss")[0].numpy()
    probs, _, idx, n, _, _ = head_kernel.topk_one(x, low, w, b, 1.0, 5)
    assert n >= 5 and probs.shape == idx.shape == (5,)
    probs, _, idx, n, _, _ = head_kernel.topk_one(x, low, w, b, 1.0, 5, max_rows=0)
    assert n >= 5 and probs.shape == idx.shape == (0,)  # too wide: nothing rescored
    x[2] = np.nan
    assert head_kernel.topk_one(x, low, w, b, 1.0, 5)[3] == -1
