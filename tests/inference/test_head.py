"""kgzsl.inference.head: the int8 shortlist returns the float32 top k, and its error bound holds."""

import pytest
import torch

import kgzsl.inference.head as head_module
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.head import INT8_MIN_ROWS, LinearHead

from head_helpers import assert_topk_matches_float32, head_features as _features, head_rows as _rows, needs_int8

@needs_int8
@pytest.mark.parametrize("kind", ["relu", "gauss", "spiky", "zero", "constant"])
@pytest.mark.parametrize("outliers", [False, True])
def test_bound_holds_everywhere(kind, outliers):
    rows = _rows(600, 64, seed=1, outliers=outliers)
    head = LinearHead(rows, int8=True)
    x = _features(16, 64, seed=2, kind=kind)
    approx, bound = head.approximate_logits(x)
    exact = x.double() @ rows[:, :-1].double().T + rows[:, -1].double()
    assert ((approx.double() - exact).abs() <= bound.double()).all()
    assert (bound > 0).all()


@needs_int8
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("batch", [1, 3, 8])  # the compiled pass (per image) and the batched int8 path
def test_topk_equals_float32(seed, batch):
    rows = _rows(900, 48, seed=seed, outliers=seed % 2 == 1)
    x = _features(batch, 48, seed=100 + seed, kind="relu" if seed < 3 else "gauss")
    fast, exact = LinearHead(rows, int8=True), LinearHead(rows, int8=False)
    assert fast.int8 and not exact.int8
    assert_topk_matches_float32(fast, exact, x)


@needs_int8
def test_topk_of_all_rows_and_wide_batches():
    rows = _rows(40, 16, seed=3)
    x = _features(64, 16, seed=4, kind="gauss")
    p, i, _ = LinearHead(rows, int8=True).topk(x, 40)  # every row: the dense fallback
    assert torch.equal(i.sort(1).values, torch.arange(40).expand(64, 40))
    torch.testing.assert_close(p.sum(1), torch.ones(64), rtol=0, atol=1e-5)


@needs_int8
def test_non_finite_features_take_the_dense_path():
    rows = _rows(300, 16, seed=5)
    x = _features(2, 16, seed=6, kind="gauss")
    x[0, 3] = float("nan")
    p, i, v = LinearHead(rows, int8=True).topk(x, 3)
    pe, ie, ve = LinearHead(rows, int8=False).topk(x, 3)
    assert torch.equal(i[1], ie[1]) and torch.isnan(v[0]).all() and torch.isnan(ve[0]).all()


def test_float32_head_and_auto_choice():
    small = LinearHead(_rows(10, 8, seed=0))
    assert not small.int8  # below INT8_MIN_ROWS: no int8 copy
    x = _features(2, 8, seed=0, kind="gauss")
    torch.testing.assert_close(small.logits(x), x @ small.weight.T + small.bias)
    with pytest.raises(RuntimeError, match="int8=True"):
        small.approximate_logits(x)
    if head_module._int_mm_available():
        assert LinearHead(torch.zeros(INT8_MIN_ROWS, 9)).int8
    with pytest.raises(ValueError, match=r"\[C, D \+ 1\]"):
        LinearHead(torch.zeros(5))


@needs_int8
def test_classifier_predictions_unchanged_by_int8_head(tiny_run, monkeypatch):
    from kgzsl.vision.samples import demo_photos

    photos = demo_photos()[:3]
    plain = ZeroShotClassifier.load(tiny_run, device="cpu").predict(photos, top_k=5)
    monkeypatch.setattr(head_module, "INT8_MIN_ROWS", 1)
    monkeypatch.setattr(LinearHead.__init__, "__defaults__", (True,))
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    fast = clf.predict(photos, top_k=5)
    assert clf._heads[None][2].int8
    for a, b in zip(plain, fast):
        assert [r["wnid"] for r in a] == [r["wnid"] for r in b]
        assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-3)
