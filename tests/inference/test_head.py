"""kgzsl.inference.head: the int8 top k equals the float32 one, from any number of threads at once."""

import threading

import pytest
import torch
from head_helpers import assert_topk_matches_float32, low_rank_rows, needs_int8
from head_helpers import head_features as _features
from head_helpers import head_rows as _rows

import kgzsl.inference.head as head_module
from kgzsl.inference.claims import GroupHead
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.head import INT8_MIN_ROWS, HeadCache, LinearHead


@needs_int8
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("batch", [1, 3])
def test_topk_equals_float32(seed, batch):
    rows = _rows(900, 48, seed=seed, outliers=seed % 2 == 1)
    x = _features(batch, 48, seed=100 + seed, kind="relu" if seed < 3 else "gauss")
    fast, exact = LinearHead(rows, int8=True), LinearHead(rows, int8=False)
    assert fast.path(1) == "int8" and fast.path(8) == "int8" and fast.path(9) == "float32"
    assert not exact.int8 and exact.path(1) == "float32"
    assert_topk_matches_float32(fast, exact, x)


@needs_int8
@pytest.mark.parametrize("seed", range(4))
def test_low_rank_topk_equals_float32(seed):
    rows = low_rank_rows(900, 256, 48, seed=10 + seed)
    fast, exact = LinearHead(rows, int8=True, scale=2.0), LinearHead(rows, int8=False, scale=2.0)
    assert fast.path(1) == "int8-lowrank" and fast.low_rank == 64
    x = _features(2, 256, seed=20 + seed, kind="relu" if seed % 2 else "gauss")
    assert_topk_matches_float32(fast, exact, x)


@needs_int8
def test_dense_product_answers_wide_shortlists_nan_and_wide_k():
    rows = _rows(40, 16, seed=3)
    x = _features(2, 16, seed=4, kind="gauss")
    p, i, _ = LinearHead(rows, int8=True).topk(x, 40)  # every row: the dense fallback
    assert torch.equal(i.sort(1).values, torch.arange(40).expand(2, 40))
    torch.testing.assert_close(p.sum(1), torch.ones(2), rtol=0, atol=1e-5)
    tied = torch.zeros(600, 17) + torch.arange(17.0)  # 600 equal rows: all need rescoring
    p, i, v = LinearHead(tied, int8=True).topk(x, 5)
    pe, ie, ve = LinearHead(tied, int8=False).topk(x, 5)
    torch.testing.assert_close(v, ve)
    torch.testing.assert_close(p, pe)
    rows = _rows(300, 16, seed=5)
    x[0, 3] = float("nan")
    p, i, v = LinearHead(rows, int8=True).topk(x, 3)
    pe, ie, ve = LinearHead(rows, int8=False).topk(x, 3)
    assert torch.equal(i[1], ie[1]) and torch.isnan(v[0]).all() and torch.isnan(ve[0]).all()
    wide = LinearHead(rows, int8=True)
    assert_topk_matches_float32(wide, LinearHead(rows, int8=False), x[1:], ks=(100,))  # k > MAX_K: dense


@needs_int8
def test_int8_copy_is_built_on_the_second_call(monkeypatch):
    monkeypatch.setattr(head_module, "INT8_MIN_ROWS", 100)
    head = LinearHead(_rows(300, 16, seed=9))  # auto
    x = _features(1, 16, seed=10, kind="relu")
    assert head.int8 and head._low is None
    first = head.topk(x, 5)
    assert head._low is None  # a one-off call scores densely
    second = head.topk(x, 5)
    assert head._low is not None
    assert torch.equal(first[1], second[1])


def test_float32_head_scale_and_auto_choice():
    rows = _rows(10, 8, seed=0)
    small = LinearHead(rows, scale=2.5)
    assert not small.int8 and small.num_classes == 10  # below INT8_MIN_ROWS: no int8 copy
    x = _features(2, 8, seed=0, kind="gauss")
    torch.testing.assert_close(small.logits(x), 2.5 * (x @ rows[:, :-1].T + rows[:, -1]))
    assert small.weight.data_ptr() == rows.data_ptr()  # views of the matrix, not copies
    if head_module._kernel() is not None:
        assert LinearHead(torch.zeros(INT8_MIN_ROWS, 9)).int8
    bad = _rows(INT8_MIN_ROWS, 8, seed=1)
    bad[7, 2] = float("inf")
    assert not LinearHead(bad, int8=True).int8  # rows that are not finite: no int8 copy
    with pytest.raises(ValueError, match=r"\[C, D \+ 1\]"):
        LinearHead(torch.zeros(5))
    with pytest.raises(ValueError, match="scale"):
        LinearHead(rows, scale=0.0)


@needs_int8
@pytest.mark.parametrize(("rank", "parallel"), [("low", True), ("full", True), ("low", False)])
def test_threads_give_the_sequential_results(rank, parallel, monkeypatch):
    monkeypatch.setattr(head_module._kernel(), "PARALLEL", parallel)  # False: as without a thread-safe numba layer
    rows = low_rank_rows(9000, 128, 24, seed=30) if rank == "low" else _rows(9000, 64, seed=31)
    head = LinearHead(rows, int8=True, scale=3.0)
    assert head.path(1) == ("int8-lowrank" if rank == "low" else "int8")
    feats = [_features(b, rows.size(1) - 1, seed=40 + i, kind="relu") for i, b in enumerate([1, 1, 2, 1, 3, 1, 1, 2])]
    expected = [head.topk(x, 5) for x in feats]
    results: dict[tuple[int, int], tuple] = {}

    def work(worker: int) -> None:
        for rep in range(3):
            for i in range(len(feats)):
                j = (i + worker + rep) % len(feats)  # the threads score different images at the same time
                results[worker, rep * 100 + j] = head.topk(feats[j], 5)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 * 3 * len(feats)
    for (_, key), got in results.items():
        for a, b in zip(got, expected[key % 100]):
            assert torch.equal(a, b)


def test_head_cache_keeps_the_most_recent_entries():
    cache = HeadCache(maxsize=2)
    built = []

    def build(key):
        return lambda: built.append(key) or key.upper()

    assert cache.get("a", build("a")) == "A" and cache.get("b", build("b")) == "B"
    assert cache.get("a", build("a")) == "A" and built == ["a", "b"]  # a hit: nothing built, "a" most recent
    cache.get("c", build("c"))
    assert list(cache._entries) == ["a", "c"]  # the least recently used went
    cache.clear()
    assert not cache._entries
    with pytest.raises(ValueError, match="maxsize"):
        HeadCache(0)


def test_head_cache_never_evicts_the_kept_entry():
    cache = HeadCache(maxsize=2, keep=lambda key: key == "every class")
    cache.get("every class", lambda: "slow to build")
    for key in "abcdefg":  # more label lists than the cache holds
        cache.get(key, lambda: key)
    assert list(cache._entries) == ["every class", "f", "g"]  # the two newest lists, and the kept entry
    rebuilt = []
    assert cache.get("every class", lambda: rebuilt.append(1)) == "slow to build" and not rebuilt


@needs_int8
def test_classifier_predictions_unchanged_by_int8_head(tiny_run, monkeypatch):
    from kgzsl.vision.samples import demo_photos

    photos = demo_photos()[:3]
    plain = ZeroShotClassifier.load(tiny_run, device="cpu").predict(photos, top_k=5)
    monkeypatch.setattr(head_module, "INT8_MIN_ROWS", 1)
    monkeypatch.setattr(LinearHead.__init__, "__defaults__", (True, 1.0))
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    fast = clf.predict(photos, top_k=5)
    assert clf._head(None)[2].int8
    for a, b in zip(plain, fast):
        assert [r["wnid"] for r in a] == [r["wnid"] for r in b]
        assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-3)


def test_classifier_heads_share_its_rows_and_stay_bounded(tiny_run):
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    rows, resolved = clf.head()
    every, chosen = clf.score_rows(), clf.requested_nodes()
    # no labels: the classes the graph was built for, not the ancestors added to connect them
    assert chosen is not None and 0 < len(chosen) < len(clf.wnids) and "n00001740" not in {r.wnid for r in resolved}
    assert [r.index for r in resolved] == chosen
    torch.testing.assert_close(rows, every[chosen])
    x = torch.randn(2, clf.rows.size(1) - 1, generator=torch.Generator().manual_seed(0))
    full = x @ every[:, :-1].T + every[:, -1]
    torch.testing.assert_close(clf.logits(x), full[:, chosen])
    head = clf._head(clf.wnids)[2]  # a label list of every node reads rows of the right width, unscaled
    linear = head.linear if isinstance(head, GroupHead) else head
    assert linear.scale == 1.0 and linear.weight.shape == (len(clf.wnids), every.size(1) - 1)
    position = set(clf.seen_nodes().tolist())
    for n in range(1, 13):  # `search` asks for one head per query
        subset, _ = clf.head(clf.wnids[:n])
        assert subset.shape == (n, clf.rows.size(1))
        got, real = clf.logits(x, clf.wnids[:n]), torch.tensor([i in position for i in range(n)])
        # a predicted row's logit (or better: a candidate also scores as the seen classes it stands for) ...
        assert bool((got[:, ~real] >= full[:, :n][:, ~real] - 1e-4).all())
        # ... and the backbone's rows give the CNN's logits, all shifted by one amount per image, at most 0
        shift = got[:, real] - full[:, :n][:, real]
        assert bool((shift <= 1e-4).all())
        torch.testing.assert_close(shift, shift[:, :1].expand_as(shift), atol=1e-4, rtol=0)
    assert len(clf._heads._entries) == 9  # the last eight lists, and the head over every class, kept


def test_split_head_gives_the_top_k_and_softmax_of_all_its_parts():
    from kgzsl.inference.head import SplitHead

    g = torch.Generator().manual_seed(5)
    matrix = torch.randn(5000, 17, generator=g)
    own = torch.zeros(5000, dtype=torch.bool)
    own[torch.randperm(5000, generator=g)[:700]] = True
    parts = [(LinearHead(matrix[mask]), torch.nonzero(mask).squeeze(1)) for mask in (~own, own)]
    split, dense = SplitHead(parts, 5000), LinearHead(matrix, int8=False)
    x = torch.randn(3, 16, generator=g)
    torch.testing.assert_close(split.logits(x), dense.logits(x))
    for _ in range(2):  # the second call reads the int8 copy of the first part
        probs, idx, top = split.topk(x, 7)
        ref_probs, ref_idx, ref_top = dense.topk(x, 7)
        assert torch.equal(idx, ref_idx)
        torch.testing.assert_close(top, ref_top)
        torch.testing.assert_close(probs, ref_probs, rtol=5e-3, atol=1e-6)
    assert split.path(1) == "int8+float32" and split.int8
