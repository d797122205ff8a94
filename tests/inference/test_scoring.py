"""Seen classes keep the backbone's rows; predicted rows are standardised on reference features."""

from __future__ import annotations

import shutil

import pytest
import torch

from kgzsl.errors import InputError
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.scoring import CALIBRATION_FILE, ScoreCalibration, fit_calibration, scoring_rows


def _reference(m: int = 40, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(m, d, generator=g) * 3, torch.randn(6, d + 1, generator=g)


def test_fit_calibration_keeps_the_reference_mean_covariance_and_real_logit_scale():
    feats, real = _reference()
    calib = fit_calibration(feats, real, source="toy")
    torch.testing.assert_close(calib.mean, feats.mean(0))
    cov = torch.cov(feats.T)
    torch.testing.assert_close(calib.spread @ calib.spread.T, cov, atol=1e-5, rtol=1e-4)
    logits = feats @ real[:, :-1].T + real[:, -1]
    assert calib.target_mean == pytest.approx(float(logits.mean(0).median()), rel=1e-5)
    assert calib.target_std == pytest.approx(float(logits.std(0).median()), rel=1e-5)
    with pytest.raises(InputError, match="at least 2"):
        fit_calibration(feats[:1], real, source="one")


def test_without_calibration_every_row_stays_on_the_backbones_scale():
    _, real = _reference()
    predicted = torch.nn.functional.normalize(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    seen_nodes = torch.tensor([2, -1, -1, -1, -1, -1])  # backbone class 0 is node 2; the others are not nodes
    rows = scoring_rows(predicted, seen_nodes, real, None, row_scale=2.5)
    torch.testing.assert_close(rows[2], real[0])
    for node in (0, 1, 3):
        torch.testing.assert_close(rows[node], 2.5 * predicted[node])
    assert not torch.equal(predicted[0], rows[0])  # a new tensor: the classifier's rows are not touched


def test_on_the_users_images_predicted_rows_are_standardised_and_real_rows_centred():
    feats, real = _reference()
    calib = fit_calibration(feats, real, source="my photos")
    predicted = torch.nn.functional.normalize(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    rows = scoring_rows(predicted, torch.tensor([2, -1, 0, -1, -1, -1]), real, calib, row_scale=2.5)
    logits = feats @ rows[:, :-1].T + rows[:, -1]
    for node, k in ((2, 0), (0, 2)):  # the backbone's rows: same weights, the bias puts the mean logit at m
        torch.testing.assert_close(rows[node, :-1], real[k, :-1])
        assert float(logits[:, node].mean()) == pytest.approx(calib.target_mean, abs=1e-4)
    assert not torch.allclose(rows[2, -1], real[0, -1])
    alpha = calib.shrinkage
    assert alpha == pytest.approx(5 / (5 + 40))
    iso = float(torch.cov(feats.T).trace()) / 5
    for node in (1, 3):  # standardised: the typical real class's mean, and its spread up to the shrinkage
        assert float(logits[:, node].mean()) == pytest.approx(calib.target_mean, abs=1e-4)
        w = predicted[node, :-1]
        spread = float((feats @ w).std())
        sigma = ((1 - alpha) * spread ** 2 + alpha * iso * float(w @ w)) ** 0.5
        assert float(logits[:, node].std()) == pytest.approx(calib.target_std * spread / sigma, rel=1e-3)


def test_calibrated_classifier_scores_seen_classes_like_the_backbone(tiny_run):
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    old = ZeroShotClassifier.load(tiny_run, device="cpu", backbone=clf.backbone, scoring="predicted")
    assert clf.scoring == "calibrated" and old.scoring == "predicted"
    x = torch.randn(3, clf.backbone.feature_dim, generator=torch.Generator().manual_seed(0))
    seen = ["n02123045", "n02099601", "n01440764"]  # tabby, golden retriever, tench: backbone classes
    own = clf.backbone.classifier_rows()[[clf.backbone.wnids.index(w) for w in seen]]
    torch.testing.assert_close(clf.logits(x, seen), x @ own[:, :-1].T + own[:, -1])
    rows = old.rows[[old.wnids.index(w) for w in seen]]
    torch.testing.assert_close(old.logits(x, seen), old.row_scale * (x @ rows[:, :-1].T + rows[:, -1]))
    with pytest.raises(InputError, match="scoring"):
        ZeroShotClassifier.load(tiny_run, device="cpu", backbone=clf.backbone, scoring="mixed")


def test_calibrate_scores_stores_the_calibration_in_the_run(tiny_run, tmp_path):
    from kgzsl.tasks.calibrate import calibrate_scores

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    feats = torch.rand(30, clf.backbone.feature_dim, generator=torch.Generator().manual_seed(3))
    calib = calibrate_scores(clf, feats)
    assert (run / CALIBRATION_FILE).is_file() and calib.images == 30
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    stored = again.score_calibration
    assert isinstance(stored, ScoreCalibration) and stored.target_std == pytest.approx(calib.target_std)
    torch.testing.assert_close(again.score_rows(), clf.score_rows())
    (run / CALIBRATION_FILE).write_bytes(b"not safetensors")
    with pytest.raises(Exception, match="safetensors|calibration"):
        ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)


def test_a_wordnet_noun_that_is_not_a_node_is_added_on_first_use_and_stored(tiny_run, tmp_path):
    from kgzsl.inference.labels import NotInGraphError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    assert "n03790512" not in clf.wnids  # motorcycle.n.01
    clf.add_missing_labels = False
    with pytest.raises(NotInGraphError, match="add-concept"):
        clf.logits(torch.zeros(1, clf.backbone.feature_dim), ["motorcycle", "car"])
    clf.add_missing_labels = True
    logits = clf.logits(torch.zeros(1, clf.backbone.feature_dim), ["motorcycle", "car"])
    assert logits.shape == (1, 2) and clf.added_wnids == ["n03790512"]
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)  # stored with the run
    assert again.added_wnids == ["n03790512"] and again.resolve_labels(["motorcycle"])[0].wnid == "n03790512"
    with pytest.raises(Exception, match="not a WordNet noun nor"):
        clf.logits(torch.zeros(1, clf.backbone.feature_dim), ["qwertyuiop"])  # not a noun: an error, nothing added
    assert clf.added_wnids == ["n03790512"]
    # an open compound that WordNet writes closed ("doorknob") is added under that name
    assert [r.synset for r in clf.resolve_labels(["door knob", "car"])] == ["doorknob.n.01", "car.n.01"]
    # an ambiguous word with no sense in the graph is added as the sense a photo shows: the Earth's satellite
    assert [r.synset for r in clf.resolve_labels(["moon", "car"])] == ["moon.n.01", "car.n.01"]


def test_threads_adding_missing_labels_at_once_get_the_sequential_answers(tiny_run, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    lists = [["moon", "car"], ["pagoda", "car"], ["coin", "car"], ["door knob", "car"], ["moon", "cat"]]
    runs = {}
    for name in ("threads", "one"):
        runs[name] = tmp_path / name
        shutil.copytree(tiny_run, runs[name])
    clf = ZeroShotClassifier.load(runs["threads"], device="cpu")
    feats = torch.rand(2, clf.backbone.feature_dim, generator=torch.Generator().manual_seed(0))
    with ThreadPoolExecutor(5) as pool:  # resolving reads WordNet's shared files; adding writes the run
        got = list(pool.map(lambda labels: clf.logits(feats, labels), lists))
    assert [tuple(g.shape) for g in got] == [(2, 2)] * len(lists)
    one = ZeroShotClassifier.load(runs["one"], device="cpu", backbone=clf.backbone)
    for labels in lists:  # the same additions, one after the other
        one.logits(feats, labels)
    # every addition re-propagates the added concepts over the grown graph, so a list scored while another
    # thread was still adding may differ a little; once all are added, the answers are the sequential ones
    for labels in lists:
        torch.testing.assert_close(clf.logits(feats, labels), one.logits(feats, labels), atol=1e-4, rtol=1e-4)
    assert sorted(clf.added_wnids) == sorted(one.added_wnids)
    stored = ZeroShotClassifier.load(runs["threads"], device="cpu", backbone=clf.backbone)
    assert sorted(stored.added_wnids) == sorted(one.added_wnids)
    assert {r.synset for r in stored.resolve_labels(["moon", "pagoda", "coin"])} == {"moon.n.01", "pagoda.n.01",
                                                                                      "coin.n.01"}


def test_a_words_usual_sense_is_added_where_the_graph_has_only_senses_it_is_never_used_for(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concept("sinkhole.n.01")  # now the graph knows "sink" only as a sinkhole, never tagged with that word
    # the same rows in a folder without the run's model: nothing can be added, the graph's best sense answers
    (tmp_path / "rows_only").mkdir()
    rows_only = ZeroShotClassifier(clf.backbone, clf.rows, clf.wnids, clf.names, clf.lemmas, clf.row_scale,
                                   run_dir=tmp_path / "rows_only")
    assert rows_only.resolve_labels(["sink", "cat"])[0].synset == "sinkhole.n.01"
    clf.add_missing_labels = False
    assert clf.resolve_labels(["sink", "cat"])[0].synset == "sinkhole.n.01"
    clf.add_missing_labels = True
    assert [r.synset for r in clf.resolve_labels(["sink", "cat"])] == ["sink.n.01", "cat.n.01"]
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)  # stored with the run
    assert again.resolve_labels(["sink"])[0].synset == "sink.n.01"


def test_an_uncalibrated_run_scores_claimed_classes_with_the_backbones_logits(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    assert clf.score_calibration is None
    x = torch.rand(3, clf.backbone.feature_dim, generator=torch.Generator().manual_seed(4)) * 2
    tabby = clf.backbone.wnids.index("n02123045")
    own = clf.backbone.classifier_rows()[tabby]
    # "cat" stands for tabby & co below it: its logit is at least tabby's own logit, exactly the CNN's, shifted
    # by log P(K | x), the backbone's belief that x shows one of the classes K the list stands for (tabby among them)
    every_real = clf.backbone.classifier_rows()
    belief = (x @ every_real[:, :-1].T + every_real[:, -1]).log_softmax(1)[:, tabby]  # log P(tabby | x) <= log P(K | x)
    assert bool((clf.logits(x, ["cat", "dog"])[:, 0] >= x @ own[:-1] + own[-1] + belief - 1e-4).all())
    node = clf.wnids.index("n02121808")  # domestic_cat.n.01: a predicted row times row_scale
    torch.testing.assert_close(clf.score_rows()[node], clf.rows[node] * clf.row_scale)
    from kgzsl.tasks.calibrate import calibrate_scores

    calibrate_scores(clf, x.repeat(4, 1) + torch.rand(12, x.size(1), generator=torch.Generator().manual_seed(5)),
                     save=False)
    assert not torch.allclose(clf.score_rows()[node], clf.rows[node] * clf.row_scale)  # now standardised
