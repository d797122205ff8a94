"""Candidates fitted to the user's unlabelled images: EM of a shared-covariance Gaussian mixture."""

from __future__ import annotations

import shutil

import pytest
import torch

from kgzsl.errors import InputError
from kgzsl.inference.adaptation import MIN_IMAGES_PER_CANDIDATE, AdaptedHead, ClassAdapter
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.scoring import CALIBRATION_FILE, ScoreCalibration, fit_calibration


def _clusters(per: int = 60, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three well separated clusters and their labels; the centres lie on the first three axes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(3, d)
    centres[0, 0], centres[1, 1], centres[2, 2] = 4.0, 4.0, 4.0
    labels = torch.arange(3).repeat_interleave(per)
    return centres[labels] + torch.randn(3 * per, d, generator=g), labels, centres


def test_em_moves_weak_rows_onto_the_clusters_of_the_images():
    x, labels, centres = _clusters()
    # zero-shot rows that only lean the right way: each centre's direction, and a large bias towards class 0
    weak = torch.cat([0.3 * centres, torch.tensor([[5.0], [0.0], [0.0]])], 1)
    weak_logits = x @ weak[:, :-1].T + weak[:, -1]
    before = float((weak_logits.argmax(1) == labels).float().mean())
    rows = ClassAdapter(x).rows(weak_logits)
    after = float(((x @ rows[:, :-1].T + rows[:, -1]).argmax(1) == labels).float().mean())
    assert before < 0.7 and after > 0.95, (before, after)


def test_the_adapted_rows_are_a_fixed_point_of_the_em_step():
    x, _, centres = _clusters(seed=1)
    rows = ClassAdapter(x).fit(x @ centres.T).float()
    # one more round by hand, densely: responsibilities, means, priors, the within-class covariance
    # (shrunk as documented), then the discriminant rows
    x = x.double()
    resp = (x @ rows[:, :-1].double().T + rows[:, -1].double()).softmax(1)
    count = resp.sum(0)
    mu = x.mean(0)
    offset = (resp.T @ x) / count[:, None] - mu
    m, d = x.shape
    total = (x - mu).T @ (x - mu) / m
    between = (offset.T * (count / m)) @ offset
    keep = 1 - d / (d + m)
    within = keep * (total - between) + (1 - keep) * torch.trace(total) / d * torch.eye(d, dtype=x.dtype)
    weight = torch.linalg.solve(within, offset.T).T
    bias = -0.5 * (weight * offset).sum(1) - weight @ mu + torch.log(count / count.sum())
    torch.testing.assert_close(rows, torch.cat([weight, bias[:, None]], 1).float(), atol=1e-3, rtol=1e-3)


def test_the_adapted_rows_keep_the_heads_spread_and_the_mixtures_ranking():
    x, labels, centres = _clusters(seed=3)
    adapter = ClassAdapter(x)
    start = x @ centres.T * 0.1
    mixture, rows = adapter.fit(start), adapter.rows(start)
    scaled = x @ rows[:, :-1].T + rows[:, -1]
    assert float(scaled.std(0).median()) == pytest.approx(float(start.std(0).median()), rel=1e-4)
    ratio = rows.double() / mixture
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0, 0])), rtol=1e-4, atol=1e-6)  # one factor
    assert float(ratio[0, 0]) < 1 and bool((scaled.argmax(1) == labels).float().mean() > 0.95)


def test_a_fit_that_two_halves_of_the_images_do_not_reproduce_is_no_surer_than_they_agree():
    x, labels, centres = _clusters(seed=4)
    adapter = ClassAdapter(x)
    assert adapter.reproducibility(x @ centres.T * 0.1) > 0.95  # clear clusters: the cap does not bind
    # clusters that overlap: the halves' mixtures agree on fewer images, though far more than chance
    g = torch.Generator().manual_seed(4)
    near = centres[labels] * 0.375 + torch.randn(x.shape, generator=g)
    vague = ClassAdapter(near)
    start = near @ centres.T * 0.1
    agree = vague.reproducibility(start)
    rows = vague.rows(start)
    sure = float((near @ rows[:, :-1].T + rows[:, -1]).softmax(1).max(1).values.mean())
    mixture = vague.fit(start)
    unscaled = float((near.double() @ mixture[:, :-1].T + mixture[:, -1]).softmax(1).max(1).values.mean())
    assert 0.5 < agree < 0.9 and sure <= agree + 1e-4 < unscaled, (agree, sure, unscaled)
    assert vague.reproducibility(start) == agree  # seeded: the same halves every time


def test_a_fit_the_halves_agree_on_no_more_than_chance_is_not_used(caplog):
    """Images of no such groups (noise): each half's mixture finds groups of its own. Scaled to the halves'
    agreement, such rows gave every candidate the same score; now the head is used as it is."""
    from kgzsl.inference.adaptation import _agreement

    noise = torch.randn(180, 6, generator=torch.Generator().manual_seed(5))
    start = noise @ torch.randn(6, 6, generator=torch.Generator().manual_seed(6)) * 0.3
    vague = ClassAdapter(noise)
    agree, chance = _agreement(*vague._half_votes(start))
    assert agree < chance + 2 * (chance * (1 - chance) / 180) ** 0.5, (agree, chance)
    with caplog.at_level("INFO", logger="kgzsl.inference.adaptation"):
        assert vague.rows(start) is None
    assert "6 candidates not fitted to the 180 images" in caplog.text and "no more than chance" in caplog.text
    # the chance share is that of two labellings drawn apart with the same shares of each candidate
    assert _agreement(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])) == (0.75, (2 * 1 + 2 * 3) / 16)
    assert _agreement(torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long)) == (1.0, 1.0)  # one group


def test_adaptation_applies_only_with_enough_images_per_candidate_and_checks_its_input():
    x, _, _ = _clusters(per=10)  # 30 images
    adapter = ClassAdapter(x)
    assert adapter.applies(30 // MIN_IMAGES_PER_CANDIDATE) and not adapter.applies(30 // MIN_IMAGES_PER_CANDIDATE + 1)
    assert not adapter.applies(1)
    with pytest.raises(ValueError, match="logits of the 30"):
        adapter.rows(torch.zeros(29, 3))
    with pytest.raises(InputError, match="at least 2"):
        ClassAdapter(x[:1])
    copies = ClassAdapter(x[:1].repeat(30, 1))  # one image, 30 times: nothing to fit, and no error
    assert copies.precision is None and not copies.applies(2)
    with pytest.raises(ValueError, match="do not vary"):
        copies.rows(torch.zeros(30, 2))
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(InputError, match="not all finite"):
        ClassAdapter(bad)


def test_a_calibration_keeps_its_features_and_reads_files_without_them(tmp_path):
    x, _, _ = _clusters()
    real = torch.randn(4, x.size(1) + 1, generator=torch.Generator().manual_seed(2))
    calib = fit_calibration(x, real, source="toy")
    torch.testing.assert_close(calib.features, x)
    again = ScoreCalibration.load(calib.save(tmp_path / "c.safetensors"))
    torch.testing.assert_close(again.features, x)
    old = ScoreCalibration(calib.mean, calib.spread, calib.target_mean, calib.target_std, "old", 10)
    assert ScoreCalibration.load(old.save(tmp_path / "old.safetensors")).features is None
    from kgzsl.utils.io import save_tensors

    save_tensors(tmp_path / "bad.safetensors", {"mean": calib.mean, "spread": calib.spread, "features": x[:, :3]},
                 metadata={"target_mean": "0.0", "target_std": "1.0"})
    with pytest.raises(InputError, match="features of shape"):
        ScoreCalibration.load(tmp_path / "bad.safetensors")


def _images_of(clf, wnids, per, g):
    """Pooled features of ``per`` made-up images of each of these backbone classes: noise, pushed along the
    class's own row (the calibration images of a user who photographs those classes)."""
    rows = torch.nn.functional.normalize(clf.backbone.classifier_rows()[:, :-1], dim=1)
    position = {w: i for i, w in enumerate(clf.backbone.wnids)}
    return torch.cat([torch.rand(per, rows.size(1), generator=g) * 2 + 12 * rows[position[w]] for w in wnids])


def test_a_calibrated_run_adapts_a_short_label_list_and_reports_the_senses(tiny_run, tmp_path):
    from kgzsl.tasks.calibrate import calibrate_scores

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    d = clf.backbone.feature_dim
    g = torch.Generator().manual_seed(6)
    labels = ["cat", "dog"]
    plain = clf.candidate_head(labels)
    assert not isinstance(plain, AdaptedHead)  # not calibrated: nothing to adapt to
    feats = _images_of(clf, ["n02123045", "n02099601"], 20, g)  # tabby, golden retriever
    calibrate_scores(clf, feats)
    head = clf.candidate_head(labels)
    assert isinstance(head, AdaptedHead)
    x = torch.rand(3, d, generator=g) * 2
    expected = clf.adapter().rows(head.base.logits(feats))
    torch.testing.assert_close(clf.logits(x, labels), x @ expected[:, :-1].T + expected[:, -1], atol=1e-4, rtol=1e-4)
    preds = clf.predict(torch.rand(2, 3, 96, 96, generator=g), labels, top_k=2)  # a transformed batch
    senses = {r.label: {r.synset, *[clf.names[n] for n in r.senses]} for r in clf.resolve_labels(labels)}
    assert {p["label"] for p in preds[0]} == set(labels)
    assert all(p["synset"] in senses[p["label"]] for p in preds[0] + preds[1]), preds
    too_many = [w for w in clf.wnids if w not in clf.backbone.wnids][:40 // MIN_IMAGES_PER_CANDIDATE + 1]
    assert not isinstance(clf.candidate_head(too_many), AdaptedHead)  # fewer than 5 images per candidate
    clf.adapt_to_images = False
    assert not isinstance(clf.candidate_head(labels), AdaptedHead)
    # stored with the run: a later load adapts the same way
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert isinstance(again.candidate_head(labels), AdaptedHead)
    assert (run / CALIBRATION_FILE).is_file()
    torch.testing.assert_close(again.logits(x, labels), x @ expected[:, :-1].T + expected[:, -1], atol=1e-4, rtol=1e-4)


def test_one_call_can_score_a_list_unfitted_without_changing_the_classifier(tiny_run, tmp_path):
    """A server cannot flip adapt_to_images per request (other threads share it): predict takes ``adapt``."""
    from kgzsl.tasks.calibrate import calibrate_scores

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    g = torch.Generator().manual_seed(16)
    labels = ["cat", "dog"]
    calibrate_scores(clf, _images_of(clf, ["n02123045", "n02099601"], 20, g), save=False)
    x = torch.rand(3, clf.backbone.feature_dim, generator=g) * 2
    fitted, plain = clf.logits(x, labels), clf.logits(x, labels, adapt=False)
    torch.testing.assert_close(plain, clf.candidate_head(labels).base.logits(x))  # the centred head
    assert not torch.allclose(fitted, plain)
    assert clf.adapt_to_images and isinstance(clf.candidate_head(labels), AdaptedHead)  # untouched
    images = torch.rand(2, 3, 96, 96, generator=g)
    unfitted = clf.predict(images, labels, adapt=False)
    clf.adapt_to_images = False
    assert unfitted == clf.predict(images, labels)
    assert clf.predict(images, labels, adapt=True) != unfitted  # and the other way round


def test_threads_fitting_label_lists_at_once_get_the_sequential_answers(tiny_run, tmp_path):
    """A server fits each label list on first use, from many threads at once: same answers as one by one."""
    from concurrent.futures import ThreadPoolExecutor

    from kgzsl.tasks.calibrate import calibrate_scores

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    g = torch.Generator().manual_seed(7)
    calibrate_scores(clf, _images_of(clf, ["n02123045", "n02099601", "n04285008", "n01443537"], 15, g))
    lists = [["cat", "dog"], ["cat", "dog", "bear"], ["car", "bear"], ["tabby", "goldfish", "car"]]
    images = torch.rand(2, 3, 96, 96, generator=g)
    sequential = [clf.predict(images, labels, top_k=2) for labels in lists]
    assert all(isinstance(clf.candidate_head(labels), AdaptedHead) for labels in lists)
    fresh = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)  # nothing fitted yet
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda labels: fresh.predict(images, labels, top_k=2), lists * 3))
    for got, want in zip(concurrent, sequential * 3):
        assert [[p["label"] for p in image] for image in got] == [[p["label"] for p in image] for image in want]
        for a, b in zip(got, want):
            assert [p["score"] for p in a] == pytest.approx([p["score"] for p in b], abs=1e-5)


def test_a_list_whose_classes_the_calibration_images_do_not_show_keeps_the_calibrated_head(tiny_run, tmp_path):
    """Calibrated on images of other things, a short list was fitted to groups that were not its classes and
    then scaled down to the halves' agreement, chance: every label got the same score on every photo."""
    from kgzsl.tasks.calibrate import calibrate_scores

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    g = torch.Generator().manual_seed(8)
    calibrate_scores(clf, torch.rand(30, clf.backbone.feature_dim, generator=g) * 2)  # no cats, no dogs
    head = clf.candidate_head(["cat", "dog"])
    assert not isinstance(head, AdaptedHead)
    x = _images_of(clf, ["n02123045"], 1, g)  # a tabby
    clf.adapt_to_images = False
    torch.testing.assert_close(clf.logits(x, ["cat", "dog"]), head.logits(x))  # the calibrated (centred) head
    probs = clf.logits(x, ["cat", "dog"]).softmax(1)
    assert float(probs[0, 0]) > 0.9, probs


def test_abstain_compares_the_threshold_with_the_calibrated_heads_logit_whatever_the_list(tiny_run, tmp_path):
    """A fitted list's rows are scaled to its own fit: their logits were compared with a threshold set on
    another list's scale, and every photo abstained (or none did)."""
    from kgzsl.inference.abstain_rule import abstain_scores
    from kgzsl.tasks.abstain import calibrate_abstain
    from kgzsl.tasks.calibrate import calibrate_scores
    from kgzsl.vision.images import load_image
    from kgzsl.vision.samples import demo_photos

    photo = next((p for p in demo_photos() if p.stem == "chelsea"), None)
    if photo is None:
        pytest.skip("scikit-image's sample photos are not installed")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    feats = _images_of(clf, ["n02123045", "n02099601"], 20, torch.Generator().manual_seed(9))
    calibrate_scores(clf, feats)
    pair = ["tabby", "golden retriever"]
    assert isinstance(clf.candidate_head(pair), AdaptedHead)
    calibrate_abstain(clf, keep=0.9, images=feats, labels=pair)
    base = clf.candidate_head(pair).base.logits(feats).max(1).values.sort().values  # 4 of 40 below the threshold
    assert float(base[3]) < clf.abstain_calibration["threshold"] < float(base[4])
    head = clf.candidate_head(["cat", "dog"])
    assert isinstance(head, AdaptedHead)
    record = clf.predict(photo, ["cat", "dog"], abstain=True)
    x = clf.backbone(clf.backbone.transform(load_image(photo))[None])
    assert record["max_logit"] == pytest.approx(float(head.base.logits(x).max()), abs=1e-5)
    assert float(abstain_scores(head, x)) == pytest.approx(record["max_logit"], abs=1e-5)
    assert abs(float(head.logits(x).max()) - record["max_logit"]) > 1e-3  # the fitted rows' scale is another
