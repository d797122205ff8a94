import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kgzsl.tasks.metrics import (calibrated_stacking, calibration_error, choose_gamma, gzsl_thresholds, hit_at_k,
                                 lca_heights,
                            mean_per_class_accuracy, mistake_severity, seen_unseen_accuracy, true_class_ranks)
from kgzsl.vision.extract import default_cache_dir, extract_features, iter_features
from kgzsl.vision.folders import image_folder
from kgzsl.graph import KnowledgeGraph

from conftest import TINY_WNIDS, toy_graph

# ---------------------------------------------------------------- metrics on hand-made scores


def test_hit_at_k_ties_count_against_and_large_k():
    scores = torch.tensor([[0.9, 0.5, 0.1],    # true 0 is alone on top: rank 1
                           [0.5, 0.5, 0.1],    # tied with column 1: rank 2
                           [0.1, 0.2, 0.3],    # last: rank 3
                           [0.7, 0.7, 0.7]])   # all tied: rank 3
    targets = torch.tensor([0, 0, 0, 1])
    assert true_class_ranks(scores, targets).tolist() == [1, 2, 3, 3]
    hit = hit_at_k(scores, targets)
    assert list(hit) == [1, 2, 5, 10, 20]
    assert hit[1] == pytest.approx(0.25) and hit[2] == pytest.approx(0.5)
    assert hit[5] == hit[10] == hit[20] == 1.0  # k > C is a hit
    nan = torch.tensor([[math.nan, 0.0]])
    assert true_class_ranks(nan, torch.tensor([0])).tolist() == [2]  # a NaN score is never a hit
    with pytest.raises(ValueError, match="column indices"):
        hit_at_k(scores, torch.tensor([0, 0, 0, 3]))


def test_calibrated_stacking_subtracts_from_seen_columns_only():
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    out = calibrated_stacking(scores, torch.tensor([True, False, True]), 0.5)
    assert out.tolist() == [[0.5, 2.0, 2.5]] and scores.tolist() == [[1.0, 2.0, 3.0]]


def _gzsl_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Columns 0, 1 seen; 2, 3 unseen. Seen scores are inflated by 1, so unseen images lose at gamma 0."""
    seen_mask = torch.tensor([True, True, False, False])
    scores = torch.tensor([[3.0, 0.0, 0.5, 0.0],   # seen 0, right by 2.5
                           [0.0, 2.0, 0.0, 0.1],   # seen 1, right by 1.9
                           [1.5, 0.0, 1.0, 0.0],   # unseen 2, behind seen 0 by 0.5
                           [0.0, 1.2, 0.0, 1.0],   # unseen 3, behind seen 1 by 0.2
                           [0.0, 1.0, 2.0, 0.0]])  # unseen 2, right already
    return scores, torch.tensor([0, 1, 2, 3, 2]), seen_mask


def test_seen_unseen_accuracy_and_harmonic_mean():
    scores, targets, seen_mask = _gzsl_case()
    acc = seen_unseen_accuracy(scores, targets, seen_mask)
    assert acc["seen"] == 1.0 and acc["unseen"] == pytest.approx(1 / 3)
    assert acc["harmonic"] == pytest.approx(2 * (1 / 3) / (4 / 3))
    acc = seen_unseen_accuracy(calibrated_stacking(scores, seen_mask, 3.0), targets, seen_mask)
    assert acc["seen"] == 0.0 and acc["unseen"] == 1.0 and acc["harmonic"] == 0.0
    only_seen = seen_unseen_accuracy(scores[:2], targets[:2], seen_mask)
    assert math.isnan(only_seen["unseen"])


def test_choose_gamma_improves_harmonic_mean_and_agrees_with_stacking():
    scores, targets, seen_mask = _gzsl_case()
    before = seen_unseen_accuracy(scores, targets, seen_mask)["harmonic"]
    gamma, h = choose_gamma(scores, targets, seen_mask)
    assert h == 1.0 > before and 0.5 < gamma < 1.9
    after = seen_unseen_accuracy(calibrated_stacking(scores, seen_mask, gamma), targets, seen_mask)
    assert after["harmonic"] == pytest.approx(h)
    assert choose_gamma(scores, targets, seen_mask, grid=[0.0, 0.3]) == (0.3, pytest.approx(0.8))
    with pytest.raises(ValueError, match="both seen and unseen"):
        choose_gamma(scores[:2], targets[:2], seen_mask)


def test_threshold_shortcut_matches_explicit_stacking():
    from kgzsl.tasks.metrics import _accuracy_at

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(200, 12, generator=g).round(decimals=1)  # rounding makes ties
    targets = torch.randint(0, 12, (200,), generator=g)
    seen_mask = torch.arange(12) < 5
    is_seen, threshold, _ = gzsl_thresholds(scores, targets, seen_mask)
    gammas = [-1.05, -0.25, 0.0, 0.35, 1.05]  # off the 0.1 grid, so float rounding cannot flip a tie
    acc = _accuracy_at(is_seen, threshold, torch.tensor(gammas))
    for gamma, (seen, unseen) in zip(gammas, acc.tolist()):
        explicit = true_class_ranks(calibrated_stacking(scores, seen_mask, gamma), targets) == 1
        assert torch.equal(explicit, torch.where(is_seen, threshold > gamma, threshold < gamma)), gamma
        direct = seen_unseen_accuracy(calibrated_stacking(scores, seen_mask, gamma), targets, seen_mask)
        assert (direct["seen"], direct["unseen"]) == pytest.approx((seen, unseen))


def test_mean_per_class_accuracy_weighs_classes_equally():
    scores = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    targets = torch.tensor([0, 0, 0, 1])
    assert mean_per_class_accuracy(scores, targets) == pytest.approx((2 / 3 + 0) / 2)


def test_calibration_error_by_hand():
    # top probabilities 0.9 and 0.9 share a bin; 0.6 and 0.5 each have one of their own
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
    targets = torch.tensor([0, 1, 1, 0])  # right, wrong, right, right (ties: the first column)
    out = calibration_error(probs.log(), targets)
    assert out["mean_confidence"] == pytest.approx((0.9 + 0.9 + 0.6 + 0.5) / 4)
    assert out["ece"] == pytest.approx((2 * abs(0.5 - 0.9) + abs(1 - 0.6) + abs(1 - 0.5)) / 4)
    with pytest.raises(ValueError, match="no images"):
        calibration_error(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_lca_heights_on_toy_taxonomy():
    toy = toy_graph()  # 0 entity, 1 animal, 2 artifact, 3 dog, 4 cat, 5 car
    dog, cat, car, animal = 3, 4, 5, 1
    heights = lca_heights([cat, car, animal, dog, dog], [dog, dog, dog, animal, dog], toy)
    assert heights.tolist() == [1, 2, 1, 0, 0]
    assert mistake_severity([cat, car, dog], [dog, dog, dog], toy) == pytest.approx(1.5)
    assert math.isnan(mistake_severity([dog], [dog], toy))
    two_roots = KnowledgeGraph(wnids=["a", "b", "c"], names=["a.n.01", "b.n.01", "c.n.01"], lemmas=[[], [], []],
                               glosses=["", "", ""], edges=[(1, 0, 0)])
    assert math.isnan(lca_heights([2], [1], two_roots)[0])


# ---------------------------------------------------------------- image folders and the feature cache


def _write_images(folder: Path, count: int, seed: int = 0, ext: str = ".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i}{ext}"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_image_folder_lists_wnid_subfolders(tmp_path):
    _write_images(tmp_path / "n00000002", 2)
    _write_images(tmp_path / "n00000001", 1, ext=".JPEG")
    (tmp_path / "n00000001" / "notes.txt").write_text("not an image")
    (tmp_path / "readme.txt").write_text("x")
    items = image_folder(tmp_path)
    assert [(p.name, w) for p, w in items] == [("img0.JPEG", "n00000001"), ("img0.jpg", "n00000002"),
                                               ("img1.jpg", "n00000002")]
    assert [w for _, w in image_folder(tmp_path, wnids=["n00000002"])] == ["n00000002"] * 2
    with pytest.raises(FileNotFoundError, match="not found"):
        image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        image_folder(tmp_path / "empty")


def _to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im.resize((8, 8)), dtype=np.float32)).permute(2, 0, 1) / 255


class _MeanColour(torch.nn.Module):
    """A stand-in backbone: the feature is the mean colour."""

    name, weights, feature_dim, device = "mean-colour", "v1", 3, torch.device("cpu")
    transform = staticmethod(_to_tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def test_extract_features_skips_bad_images_and_uses_the_cache(tmp_path, caplog, monkeypatch):
    paths = _write_images(tmp_path / "imgs", 3)
    bad = tmp_path / "imgs" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    paths.insert(1, bad)
    backbone = _MeanColour()
    with caplog.at_level(logging.WARNING):
        feats, ok = extract_features(backbone, paths, cache_dir=tmp_path / "cache", batch_size=2, progress=False)
    assert ok.tolist() == [True, False, True, True] and feats.shape == (4, 3) and feats.dtype == torch.float32
    assert str(bad) in caplog.text
    assert torch.allclose(feats[0], _to_tensor(Image.open(paths[0]).convert("RGB")).mean((1, 2)))
    assert feats[1].abs().sum() == 0
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    def fail(x):
        raise AssertionError("the backbone ran although the features are cached")

    monkeypatch.setattr(backbone, "forward", fail)
    again, ok_again = extract_features(backbone, paths, cache_dir=tmp_path / "cache", progress=False)
    assert torch.equal(again, feats) and torch.equal(ok_again, ok)
    backbone.weights = "v2"  # other weights: another cache entry, so the backbone must run
    with pytest.raises(AssertionError, match="backbone ran"):
        extract_features(backbone, paths, cache_dir=tmp_path / "cache", progress=False)


def test_iter_features_streams_groups_through_one_loader(tmp_path, monkeypatch):
    import kgzsl.vision.extract as fc

    folder = tmp_path / "imgs"
    groups = [_write_images(folder / "a", 3, seed=1), [], _write_images(folder / "b", 4, seed=2),
              _write_images(folder / "c", 1, seed=3)]
    (folder / "b" / "broken.jpg").write_bytes(b"not an image")
    groups[2].insert(2, folder / "b" / "broken.jpg")
    (folder / "d").mkdir()
    (folder / "d" / "only.png").write_bytes(b"neither")
    groups.append([folder / "d" / "only.png"])  # a group with no readable image
    backbone = _MeanColour()
    cache = tmp_path / "cache"
    single = [extract_features(backbone, g, cache_dir=tmp_path / "alone", progress=False) for g in groups]
    extract_features(backbone, groups[2], cache_dir=cache, progress=False)  # one group cached beforehand
    loaders = []
    real = fc.DataLoader
    monkeypatch.setattr(fc, "DataLoader", lambda *a, **k: loaders.append(k) or real(*a, **k))
    got = list(iter_features(backbone, groups, cache_dir=cache, batch_size=3, progress=False))
    assert [g for g, _, _ in got] == [0, 1, 2, 3, 4] and len(loaders) == 1  # cached group skipped, one loader
    assert got[4][1].shape == (1, 3) and got[4][1].abs().sum() == 0 and not got[4][2].any()
    for (_, f, ok), (f1, ok1) in zip(got, single):
        assert torch.equal(ok, ok1) and torch.allclose(f, f1)
    assert got[2][2].tolist() == [True, True, False, True, True]
    assert len(list(cache.glob("*.safetensors"))) == 4  # the empty group writes nothing


def test_default_cache_dir_respects_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KGZSL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "features"
    monkeypatch.delenv("KGZSL_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "kgzsl" / "features"


def test_amp_is_cuda_only_by_default_and_cached_apart(tmp_path):
    from kgzsl.vision.extract import autocast_dtype, cache_key, default_num_workers

    assert autocast_dtype("cpu") is None and autocast_dtype("cpu", False) is None
    assert autocast_dtype("cpu", True) == torch.bfloat16
    with pytest.raises(ValueError, match="amp must be"):
        autocast_dtype("cpu", "yes")
    assert default_num_workers(10_000) == 0 and 0 <= default_num_workers() <= 4
    paths = _write_images(tmp_path / "imgs", 5)
    backbone = _MeanColour()
    assert cache_key(backbone, paths) == cache_key(backbone, paths, "float32") != cache_key(backbone, paths, "bfloat16")
    plain, _ = extract_features(backbone, paths, cache_dir=tmp_path / "cache", batch_size=2, progress=False)
    workers, _ = extract_features(backbone, paths, batch_size=2, num_workers=2, cache=False, progress=False)
    half, ok = extract_features(backbone, paths, cache_dir=tmp_path / "cache", progress=False, amp=True)
    assert torch.equal(workers, plain) and ok.all() and half.dtype == torch.float32
    torch.testing.assert_close(half, plain, atol=1e-2, rtol=1e-2)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # float32 and bfloat16 apart


# ---------------------------------------------------------------- end to end on the tiny run

UNSEEN = ["n02121620", "n02084071", "n02958343"]  # cat, dog, car: 21K classes of the tiny graph
SEEN = ["n02123045", "n01440764"]  # tabby, tench: ImageNet-1k classes


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    import skimage

    assert set(UNSEEN + SEEN) <= set(TINY_WNIDS)
    data = Path(os.path.dirname(skimage.__file__)) / "data"
    photos = [Image.open(data / name).convert("RGB") for name in ("chelsea.png", "coffee.png")]
    root = tmp_path_factory.mktemp("images")
    counts = dict(zip(UNSEEN + SEEN, [3, 2, 2, 2, 1]))
    for c, (wnid, count) in enumerate(counts.items()):
        (root / wnid).mkdir()
        for i in range(count):
            photo = photos[(c + i) % 2]
            box = (10 * i, 10 * i, photo.width - 10 * i, photo.height - 10 * i)
            photo.crop(box).resize((64, 64)).save(root / wnid / f"{i}.jpg", quality=85)
    (root / UNSEEN[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    split = root.parent / "split.txt"
    split.write_text("\n".join(UNSEEN + ["n09999999"]) + "\n")  # one class that is not in the graph
    return root, split


@pytest.mark.slow
def test_evaluate_run_generalized_with_validation_gamma(tiny_run, tiny_images, monkeypatch, tmp_path_factory):
    from kgzsl.tasks.evaluate import evaluate_run, format_result

    monkeypatch.setenv("KGZSL_CACHE", str(tmp_path_factory.getbasetemp() / "kgzsl-cache"))
    root, split = tiny_images
    val = tmp_path_factory.mktemp("val") / "images"
    shutil.copytree(root, val)  # another folder: choosing gamma on the test folder itself is refused
    result = evaluate_run(tiny_run, root, split=split, generalized=True, val_dir=val, device="cpu", progress=False)
    assert set(result) == {"n_images", "n_classes", "hit", "mistake_severity", "split", "generalized", "split_seen",
                           "split_classes", "split_nodes", "scoring", "calibrated_on", "seen_accuracy", "unseen_accuracy",
                           "harmonic_mean", "gamma"}
    assert result["n_images"] == 10 and result["n_classes"] == 3 + 24 and result["generalized"] is True
    assert list(result["hit"]) == ["1", "2", "5", "10", "20"]
    assert 0 <= result["hit"]["1"] <= result["hit"]["5"] <= result["hit"]["20"] <= 1.0
    assert result["mistake_severity"] is None or result["mistake_severity"] >= 0  # a tabby is a cat: height 0
    assert 0 <= result["harmonic_mean"] <= 1 and isinstance(result["gamma"], float)
    assert "gamma" in format_result(result) and json.loads(json.dumps(result)) == result
    fixed = evaluate_run(tiny_run, root, split=split, generalized=True, gamma=0.0, device="cpu", progress=False)
    assert fixed["gamma"] == 0.0 and "note" not in fixed


@pytest.mark.slow
def test_evaluate_command_json(tiny_run, tiny_images, capsys, monkeypatch, tmp_path_factory):
    from kgzsl.cli import main

    monkeypatch.setenv("KGZSL_CACHE", str(tmp_path_factory.getbasetemp() / "kgzsl-cache"))
    root, split = tiny_images
    assert main(["-q", "evaluate", str(tiny_run), "--data", str(root), "--split", str(split), "--json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 7 and result["n_classes"] == 3 and result["generalized"] is False
    assert set(result) == {"n_images", "n_classes", "hit", "mistake_severity", "split", "generalized", "split_seen",
                           "split_classes", "split_nodes", "scoring", "calibrated_on"}
    assert result["hit"]["5"] == 1.0 and result["split"] == str(split) and result["split_seen"] == 0
    assert (result["mistake_severity"] is None) == (result["hit"]["1"] == 1.0)  # the run's graph was found
    assert result["split_classes"] == 4 and result["split_nodes"] == 3 and result["scoring"] == "auto"
    assert result["calibrated_on"] is None  # the option's name, not the internal mode ("calibrated" read as calibrated)
    assert main(["-q", "evaluate", str(tiny_run), "--data", str(root), "--split", "no-such-split"]) == 1
    capsys.readouterr()


@pytest.mark.slow
def test_evaluate_says_what_it_leaves_out_and_takes_the_papers_scoring(tiny_run, tiny_images, capsys, caplog,
                                                                        monkeypatch, tmp_path):
    from kgzsl.cli import main

    monkeypatch.setenv("KGZSL_CACHE", str(tmp_path / "kgzsl-cache"))
    root, split = tiny_images
    data = tmp_path / "images"
    shutil.copytree(root, data)
    shutil.copytree(data / UNSEEN[0], data / "windmill")  # a class folder named by a word: its images are not scored
    shutil.copytree(data / UNSEEN[0], data / UNSEEN[0][:-1])  # a wnid with a digit missing
    assert main(["-q", "evaluate", str(tiny_run), "--data", str(data), "--split", str(split), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "scoring auto, the backbone's own rows for its classes, not calibrated on your images" in out
    assert "(3 of the split's 4 classes are nodes of the run's graph" in out
    assert f"2 sub-folders of {data} are not named by a wnid and are left out" in caplog.text
    assert "windmill" in caplog.text and UNSEEN[0][:-1] in caplog.text
    assert main(["-q", "evaluate", str(tiny_run), "--data", str(data), "--split", str(split), "--scoring", "predicted",
                 "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["scoring"] == "predicted"  # every candidate by its predicted row


def test_format_result_says_when_the_split_holds_seen_classes():
    """A wnid file may list the backbone's own classes: the table must not call them unseen."""
    from kgzsl.tasks.evaluate import format_result

    base = {"n_images": 4, "n_classes": 3, "hit": {"1": 0.5}, "mistake_severity": None, "split": "mine.txt",
            "generalized": False}
    assert "(unseen classes only)" in format_result({**base, "split_seen": 0})
    generalized = {**base, "generalized": True, "seen_accuracy": 0.5, "unseen_accuracy": 0.25,
                   "harmonic_mean": 1 / 3, "gamma": 0.5}
    assert "hit@k ranks the raw scores; gamma moves the accuracies below" in format_result(generalized)
    text = format_result({**base, "split_seen": 2})
    assert "unseen classes only" not in text and "2 of them are the backbone's classes" in text
    # the table names the scoring as the option does, and a calibration only where the scoring reads one
    first = format_result({**base, "split_seen": 0, "scoring": "auto", "calibrated_on": 50}).splitlines()[0]
    assert "scoring auto, the backbone's own rows for its classes, calibrated on 50 images" in first
    first = format_result({**base, "split_seen": 0, "scoring": "predicted", "calibrated_on": None}).splitlines()[0]
    assert "scoring predicted, every candidate by its predicted row)" in first
    # hit@k with k at least the number of candidates says nothing: marked
    lines = format_result({**base, "split_seen": 0, "hit": {"1": 0.5, "2": 0.75, "5": 1.0}}).splitlines()
    assert [line.endswith("every one is in the top k)") for line in lines if "hit@" in line] == [False, False, True]


def test_gamma_options_that_would_be_ignored_or_would_see_the_test_images_are_refused(tmp_path):
    from kgzsl.errors import InputError
    from kgzsl.tasks.evaluate import evaluate_run

    for kwargs, said in (({"gamma": 0.5}, "are for generalized=True"), ({"val_dir": tmp_path / "v"}, "are for"),
                         ({"generalized": True, "gamma": 0.5, "val_dir": tmp_path / "v"}, "not both"),
                         ({"generalized": True, "val_dir": tmp_path / "d"}, "is the test folder"),
                         ({"generalized": True, "gamma": float("nan")}, "gamma must be a finite number")):
        with pytest.raises(InputError, match=said):  # before the run is read: it does not exist
            evaluate_run(tmp_path / "no-run", tmp_path / "d", split="2-hops", **kwargs)
