"""kgzsl.inference.head_kernel: the compiled batch-1 pass certifies the same top k as the float32 product."""

import numpy as np
import pytest
import torch

import kgzsl.inference.head as head_module
from kgzsl.inference.head import LinearHead

from head_helpers import assert_topk_matches_float32, head_features, head_rows as _rows, needs_int8

head_kernel = pytest.importorskip("kgzsl.inference.head_kernel")


def _features(d: int, seed: int, kind: str) -> torch.Tensor:
    return head_features(1, d, seed, kind)


def _call(head: LinearHead, x: torch.Tensor, k: int, **kw):
    return head_kernel.topk_one(x.numpy(), *head._arrays, k, threads=2, **kw)


@needs_int8
@pytest.mark.parametrize("kind", ["relu", "gauss", "spiky", "zero", "constant", "negative"])
@pytest.mark.parametrize("outliers", [False, True])
def test_kernel_bound_holds_for_every_row(kind, outliers):
    rows = _rows(700, 64, seed=1, outliers=outliers)
    head = LinearHead(rows, int8=True)
    x = _features(64, seed=2, kind=kind)
    *_, n, approx, upper = _call(head, x, 5, debug=True)
    exact = (x.double() @ rows[:, :-1].double().T + rows[:, -1].double())[0].numpy()
    assert n >= 5 and approx.shape == (700,)
    assert (np.abs(exact - approx) <= upper - approx).all()
    assert (upper > approx).all()


@needs_int8
@pytest.mark.parametrize("seed", range(6))
def test_kernel_topk_equals_float32(seed):
    rows = _rows(900, 48, seed=seed, outliers=seed % 2 == 1)
    x = _features(48, seed=100 + seed, kind="relu" if seed < 3 else "gauss")
    fast, dense = LinearHead(rows, int8=True), LinearHead(rows, int8=False)
    assert fast.path(1) == "kernel" and fast.path(8) == "int8" and fast.path(64) == "float32"
    assert_topk_matches_float32(fast, dense, x)


@needs_int8
def test_kernel_gives_way_to_the_dense_product():
    rows = _rows(600, 16, seed=7)
    head = LinearHead(rows, int8=True)
    x = _features(16, seed=8, kind="gauss")
    assert _call(head, x, 5, max_rows=0)[3] == head_kernel.TOO_WIDE
    x_nan = x.clone()
    x_nan[0, 2] = float("nan")
    assert _call(head, x_nan, 5)[3] == head_kernel.NOT_FINITE
    p, i, v = head.topk(x_nan, 3)  # the dense product answers: NaN logits, as float32 gives
    assert torch.isnan(v).all()
    wide = LinearHead(torch.zeros(600, 17) + torch.arange(17.0), int8=True)  # 600 tied rows: all rescored
    p, i, v = wide.topk(x, 5)
    pe, ie, ve = LinearHead(torch.zeros(600, 17) + torch.arange(17.0), int8=False).topk(x, 5)
    torch.testing.assert_close(v, ve)
    torch.testing.assert_close(p, pe)


@needs_int8
def test_int8_copy_is_built_on_the_second_call(monkeypatch):
    monkeypatch.setattr(head_module, "INT8_MIN_ROWS", 100)
    rows = _rows(300, 16, seed=9)
    head = LinearHead(rows)  # auto
    x = _features(16, seed=10, kind="relu")
    assert head.int8 and head._q is None
    first = head.topk(x, 5)
    assert head._q is None  # a one-off call scores densely
    second = head.topk(x, 5)
    assert head._q is not None
    assert torch.equal(first[1], second[1])


def test_threads_follow_the_request():
    assert head_kernel.set_threads(1) == 1
    assert head_kernel.set_threads(10_000) >= 1  # capped at what numba has
    head_kernel.set_threads(torch.get_num_threads())
