"""The classifier's public surface on a hand-made 3-feature backbone: images in memory, the pipeline call,
abstaining as a field, nodes appended with ``extend`` (fast: no real model)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from kgzsl.errors import InputError
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.labels import LabelError
from kgzsl.vision.images import ImageLoadError

COLOURS = ["c:red", "c:green", "c:blue"]  # node ids: no WordNet look-up


class ColourBackbone:
    """Features = mean R, G, B of a 4x4 thumbnail, in [0, 1]."""

    name = "colour"
    feature_dim = 3
    device = torch.device("cpu")

    @staticmethod
    def transform(im: Image.Image) -> torch.Tensor:
        arr = np.asarray(im.resize((4, 4), Image.NEAREST), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.float().mean(dim=(2, 3))


def _classifier(**kwargs) -> ZeroShotClassifier:
    rows = torch.cat([torch.eye(3) * 4, torch.zeros(3, 1)], 1)  # [W | b]: one colour channel each
    return ZeroShotClassifier(ColourBackbone(), rows, COLOURS, ["red.n.01", "green.n.01", "blue.n.01"],
                              [["red"], ["green"], ["blue"]], **kwargs)


def _solid(rgb, size=(6, 5)) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (size[1], size[0], 3)).copy()


def test_numpy_arrays_and_3d_tensors_are_images():
    clf = _classifier()
    red = _solid((200, 30, 10))
    by_pil = clf.predict(Image.fromarray(red), COLOURS, top_k=3)
    assert by_pil[0]["label"] == "c:red"
    assert clf.predict(red, COLOURS, top_k=3) == by_pil
    assert clf.predict(torch.from_numpy(red).permute(2, 0, 1), COLOURS, top_k=3) == by_pil  # [3, H, W] uint8
    as_float = torch.from_numpy(red).permute(2, 0, 1).float() / 255  # [3, H, W] float in [0, 1]
    assert clf.predict(as_float, COLOURS, top_k=3) == by_pil
    rgba = np.dstack([red, np.full(red.shape[:2], 255, np.uint8)])  # HxWx4, opaque
    assert clf.predict(rgba, COLOURS, top_k=3) == by_pil
    gray = np.full((5, 6), 90, np.uint8)  # HxW: every channel alike
    scores = [p["score"] for p in clf.predict(gray, COLOURS, top_k=3)]
    assert scores == pytest.approx([1 / 3] * 3, abs=1e-6)
    # a list mixes kinds; a [B, 3, H, W] tensor is a batch already transformed
    both = clf.predict([red, _solid((10, 20, 220))], COLOURS, top_k=1)
    assert [p[0]["label"] for p in both] == ["c:red", "c:blue"]
    batch = torch.stack([ColourBackbone.transform(Image.fromarray(red))] * 2)
    assert clf.predict(batch, COLOURS, top_k=3) == [by_pil, by_pil]


def test_a_batch_of_raw_pixels_is_a_batch_of_images():
    clf = _classifier()
    red, blue = _solid((200, 30, 10)), _solid((10, 20, 220))
    expected = clf.predict([red, blue], COLOURS)
    pixels = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in (red, blue)])  # uint8, read_image's
    assert clf.predict(pixels, COLOURS) == expected
    assert [r["predictions"] for r in clf.predict_detailed(pixels, COLOURS)] == expected

    class Crop4:  # a transform that crops to 4x4, as the backbones' do to 224x224
        crop_size = [4]

        def __call__(self, im):
            return ColourBackbone.transform(im)

    backbone = ColourBackbone()
    backbone.transform = Crop4()
    cropping = ZeroShotClassifier(backbone, clf.rows, COLOURS, clf.names, clf.lemmas)
    unit = pixels.float() / 255  # values in [0, 1], not the 4x4 input: raw images, resized one by one
    assert cropping.predict(unit, COLOURS) == expected


def test_array_records_name_the_array_and_bad_arrays_are_refused():
    clf = _classifier()
    records = clf.predict_detailed([_solid((1, 2, 3)), np.zeros((2, 4, 4, 3), np.uint8)], COLOURS, top_k=1)
    assert records[0]["image"] == "<array 5x6x3 uint8>" and "predictions" in records[0]
    assert "error" in records[1] and "4-D" in records[1]["error"]
    with pytest.raises(ImageLoadError, match=r"\[0, 1\]"):
        clf.predict(torch.full((3, 4, 4), 2.0), COLOURS)  # a normalised image, not one in [0, 1]
    with pytest.raises(ImageLoadError, match="4-D"):
        clf.predict(torch.zeros(2, 1, 4, 4), COLOURS)  # not [B, 3, H, W]: not a transformed batch either


def test_by_default_every_candidate_of_a_list_and_the_five_best_without_one():
    names = [f"c:{i}" for i in range(7)]
    rows = torch.cat([torch.randn(7, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(7, 1)], 1)
    clf = ZeroShotClassifier(ColourBackbone(), rows, names, [f"n{i}.n.01" for i in range(7)],
                             [[f"n{i}"] for i in range(7)])
    red = _solid((200, 30, 10))
    assert [len(clf(red, candidate_labels=names)), len(clf(red))] == [7, 5]  # as the Hugging Face pipeline
    assert clf(red, names, top_k=None) == clf(red, names) and len(clf(red, names, top_k=2)) == 2
    assert len(clf([red, red], names)[1]) == 7 and len(clf(red, top_k=6)) == 6


def test_one_string_is_a_comma_separated_list_and_a_list_item_one_label():
    clf = _classifier()
    red = _solid((200, 30, 10))
    assert [p["label"] for p in clf(red, "c:red, c:green")] == ["c:red", "c:green"]
    with pytest.raises(LabelError, match="'c:red, c:green'"):  # an item of a list is never split
        clf(red, ["c:red, c:green"])
    with pytest.raises(LabelError, match="'c:red, c:green'"):
        clf(red, ["c:red, c:green", "c:blue"])


def test_an_ignored_hypothesis_template_is_said_once(caplog):
    clf = _classifier()
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        for _ in range(3):
            clf(_solid((200, 30, 10)), COLOURS, hypothesis_template="a photo of {}.")
    assert sum("hypothesis_template" in r.getMessage() for r in caplog.records) == 1


def test_calling_the_classifier_is_predict():
    clf = _classifier()
    green = _solid((20, 210, 40))
    assert clf(green, candidate_labels=COLOURS, top_k=2) == clf.predict(green, COLOURS, top_k=2)
    assert [p["label"] for p in clf(green, candidate_labels=["c:red", "c:green"])] == ["c:green", "c:red"]
    assert len(clf(green, top_k=None)) == 3  # top_k=None: every candidate (here every node)
    with pytest.raises(ValueError, match="top_k"):
        clf(green, top_k=0)


def test_abstaining_is_a_field_of_the_result():
    clf = _classifier()
    bright, dark = _solid((250, 10, 10)), _solid((40, 10, 10))  # best logits 4 * 250/255 and 4 * 40/255
    with pytest.raises(ValueError, match="calibrate"):
        clf.predict(bright, COLOURS, abstain=True)
    clf.set_abstain({"threshold": 2.0, "keep": 0.9})
    assert clf.abstain_calibration == {"threshold": 2.0, "keep": 0.9}
    one = clf.predict(bright, COLOURS, top_k=2, abstain=True)
    assert one["abstained"] is False and one["threshold"] == 2.0 and one["max_logit"] == pytest.approx(4 * 250 / 255, abs=1e-5)
    assert one["predictions"] == clf.predict(bright, COLOURS, top_k=2) and one["image"] == "<array 5x6x3 uint8>"
    many = clf.predict([bright, dark], COLOURS, top_k=2, abstain=True)
    assert [r["abstained"] for r in many] == [False, True]
    assert [p["label"] for p in many[1]["predictions"]] == ["c:red", "c:green"]  # still listed, no fake label
    assert "abstained" not in clf.predict_detailed([dark], COLOURS)[0]  # only asked for
    clf.set_abstain(None)
    assert clf.abstain_calibration is None
    for bad in ({"threshold": "high"}, {"threshold": float("nan")}, {"keep": 0.9}, [2.0]):
        with pytest.raises(ValueError, match="threshold"):
            clf.set_abstain(bad)


def test_constructor_owns_run_state(tmp_path):
    clf = _classifier()
    assert clf.run_dir is None and clf.summary == {} and clf.concepts is None and clf.abstain_calibration is None
    clf = _classifier(run_dir=str(tmp_path), summary={"graph": "g"}, abstain_calibration={"threshold": 1.5})
    assert clf.run_dir == tmp_path and clf.summary == {"graph": "g"}
    assert clf.abstain_calibration["threshold"] == 1.5
    clf.set_abstain(None)
    with pytest.raises(ValueError, match="kgzsl calibrate RUN"):  # the run folder's own command
        clf.predict(_solid((1, 1, 1)), COLOURS, abstain=True)


def test_extend_appends_nodes_and_refreshes_the_heads():
    clf = _classifier()
    white = _solid((255, 255, 255))
    assert len(clf.predict(white, None, top_k=None)) == 3  # caches the every-node head
    clf.extend(torch.tensor([[2.0, 2.0, 2.0, 0.5]]), ["c:white"], ["white.n.01"], [["white"]])
    assert clf.added_wnids == ["c:white"] and len(clf.wnids) == clf.rows.size(0) == 4
    assert clf.predict(white, None, top_k=1)[0]["wnid"] == "c:white"  # the cached head was dropped
    assert clf.predict(white, ["c:white", "c:red"], top_k=1)[0]["label"] == "c:white"
    with pytest.raises(ValueError, match="new and unique"):
        clf.extend(torch.zeros(1, 4), ["c:red"], ["red2.n.01"], [["red2"]])
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        clf.extend(torch.zeros(1, 3), ["c:x"], ["x.n.01"], [["x"]])
    with pytest.raises(ValueError, match="2 rows for 1 ids"):
        clf.extend(torch.zeros(2, 4), ["c:x"], ["x.n.01"], [["x"]])
    assert len(clf.wnids) == 4


def test_bad_arguments_get_errors_that_say_what_to_pass():
    clf, red = _classifier(), _solid((200, 30, 10))
    for bad in (1.5, True, 0):
        with pytest.raises(InputError, match=r"top_k must be an integer >= 1 \(or None"):
            clf.predict(red, COLOURS, top_k=bad)
    assert len(clf.predict(red, COLOURS, top_k=np.int64(2))) == 2  # numpy integers are integers
    with pytest.raises(LabelError, match=r"labels must be strings .* got 1 \(int\)"):
        clf.predict(red, [1, 2])
    with pytest.raises(LabelError, match="must be a list of strings or one comma-separated string, got int"):
        clf.predict(red, 5)
    records = clf.predict_detailed([None, red], COLOURS)  # in a list: an error record, the batch goes on
    assert records[0]["error"].startswith("cannot load image NoneType: unsupported input type NoneType; pass a path")
    assert records[1]["predictions"][0]["label"] == "c:red"
    with pytest.raises(InputError, match="no images given"):
        clf.predict(candidate_labels=COLOURS)
    with pytest.raises(ImageLoadError, match="unsupported input type object"):
        clf.predict(object(), COLOURS)


def test_hugging_face_keywords_are_understood(caplog):
    clf, red = _classifier(), _solid((200, 30, 10))
    expected = clf.predict(red, COLOURS)
    assert clf(image=red, candidate_labels=COLOURS) == expected  # the pipeline's older argument name
    with caplog.at_level(logging.WARNING, logger="kgzsl.inference.classifier"):
        assert clf(red, candidate_labels=COLOURS, hypothesis_template="a photo of {}.") == expected
    assert "hypothesis_template='a photo of {}.' is ignored" in caplog.text
    assert clf(red, candidate_labels=COLOURS, timeout=5.0) == expected  # the pipeline's URL fetch timeout
    with pytest.raises(InputError, match="not both"):
        clf(red, image=red, candidate_labels=COLOURS)


def test_a_tensor_batch_not_of_the_transforms_size_gets_a_warning(caplog):
    clf = _classifier()
    clf.backbone.transform.crop_size = [4]  # the size the colour backbone's transform gives
    good = torch.stack([ColourBackbone.transform(Image.fromarray(_solid((200, 30, 10))))])
    with caplog.at_level(logging.WARNING, logger="kgzsl.inference.batches"):
        clf.predict(good, COLOURS)
        assert caplog.text == ""
        clf.predict(torch.randn(2, 3, 30, 45, generator=torch.Generator().manual_seed(0)), COLOURS)  # normalised
    assert "a 2x3x30x45 tensor is taken as a batch already transformed, but the backbone's transform gives 4x4" \
        in caplog.text


def test_without_labels_a_word_naming_several_classes_comes_as_its_synset_and_round_trips():
    rows = torch.cat([torch.eye(3) * 4, torch.zeros(3, 1)], 1)
    clf = ZeroShotClassifier(ColourBackbone(), rows, COLOURS, ["tabby.n.01", "tabby.n.02", "red.n.01"],
                             [["tabby"], ["tabby", "female_cat"], ["red"]])
    green = _solid((10, 200, 30))
    found = clf(green, top_k=3)
    assert [p["label"] for p in found] == ["tabby.n.02", "red", "tabby.n.01"]  # "tabby" names two nodes
    again = clf(green, candidate_labels=[p["label"] for p in found])  # given back: the same classes, same order
    assert [(p["label"], p["synset"]) for p in again] == [(p["label"], p["synset"]) for p in found]


def test_the_head_over_every_class_outlives_any_number_of_label_lists():
    from kgzsl.inference.classifier import HEAD_CACHE_SIZE

    names = [f"c:{i}" for i in range(HEAD_CACHE_SIZE + 4)]
    rows = torch.cat([torch.randn(len(names), 3, generator=torch.Generator().manual_seed(0)),
                      torch.zeros(len(names), 1)], 1)
    clf = ZeroShotClassifier(ColourBackbone(), rows, names, [f"n{i}.n.01" for i in range(len(names))],
                             [[f"n{i}"] for i in range(len(names))])
    red = _solid((200, 30, 10))
    clf(red)  # no labels: the head over every class (seconds to build on a real run)
    for i in range(HEAD_CACHE_SIZE + 2):  # more label lists than the cache keeps
        clf(red, [names[i], names[i + 1]])
    assert sum(key[0] is not None for key in clf._heads._entries) == HEAD_CACHE_SIZE
    assert any(key[0] is None for key in clf._heads._entries)
