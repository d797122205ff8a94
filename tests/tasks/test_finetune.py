"""DGP stage 2: fine-tuning the backbone under a run's predicted rows (kgzsl.tasks.finetune)."""

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kgzsl.tasks.finetune as ft
from kgzsl.vision.backbones import load_backbone
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.cli import main
from kgzsl.errors import InputError
from kgzsl.tasks.finetune import CheckpointError, finetune_run
from kgzsl.tasks.finetune_data import select_classes, split_per_class, train_transform
from kgzsl.vision.folders import ImageFiles, collate_images
from kgzsl.utils.io import load_tensors

TABBY, TENCH, AIRLINER = "n02123045", "n01440764", "n02690373"
CAT = "n02121620"  # a graph node, but not one of the backbone's 1,000 classes
QUICK = {"batch_size": 4, "device": "cpu", "workers": 0, "progress": False}


def _write_images(folder: Path, count: int, seed: int = 0, colour: tuple[int, int, int] | None = None) -> list[Path]:
    """Small random images, or flat ``colour`` ones (unchanged by crops and flips)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = (np.full((16, 16, 3), colour, dtype=np.uint8) + 10 * i if colour is not None
                  else rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        paths.append(folder / f"img{i}.png")
        Image.fromarray(pixels.astype(np.uint8)).save(paths[-1])
    return paths


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("finetune"))
    return dest


@pytest.fixture(scope="module")
def tuned(tiny_run, tmp_path_factory):
    """One fine-tuning step through the CLI on 3 seen classes, an unseen folder and a broken image."""
    root = tmp_path_factory.mktemp("tuned")
    run = _copy_run(tiny_run, root / "run")
    for k, wnid in enumerate([TABBY, TENCH, AIRLINER, CAT]):
        _write_images(root / "data" / wnid, 3, seed=k)
    (root / "data" / TABBY / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out, logs = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger("kgzsl").addHandler(handler)
    try:
        with contextlib.redirect_stdout(out):
            code = main(["finetune", str(run), "--data", str(root / "data"), "--max-steps", "1", "--batch-size", "8",
                         "--val-fraction", "0.25", "--workers", "0", "--device", "cpu", "--no-progress"])
    finally:
        logging.getLogger("kgzsl").removeHandler(handler)
    assert code == 0
    return run, out.getvalue(), logs.getvalue()


def test_one_step_writes_the_outputs_and_skips_bad_images(tuned):
    run, printed, logs = tuned
    assert "best epoch 1" in printed and "backbone.safetensors" in printed
    summary = json.loads((run / "finetune" / "finetune.json").read_text())
    assert summary["finished"] is True and summary["stopped"] == "max_steps" and summary["best_epoch"] == 1
    assert summary["classes"] == 3 and len(summary["history"]) == 1 and summary["history"][0]["steps"] == 1
    assert summary["skipped_images"] == 1 and "broken.jpg" in logs and f"{CAT} (not a seen class" in logs
    assert not (run / "finetune" / "checkpoint.safetensors").exists()
    # a whole model state_dict, original 1000-way layer included: strict loading works
    weights = run / "finetune" / "backbone.safetensors"
    tuned_bb = load_backbone("efficientnet-lite0", weights=str(weights), device="cpu")
    original = load_backbone("efficientnet-lite0", device="cpu")
    assert torch.equal(tuned_bb.weight, original.weight) and torch.equal(tuned_bb.bias, original.bias)
    changed = [k for k, v in original.body.state_dict().items() if not torch.equal(v, tuned_bb.body.state_dict()[k])]
    assert changed and all("running" not in k for k in changed)  # BatchNorm statistics stay frozen


def test_classifier_loads_the_finetuned_backbone_unless_told_not_to(tuned, caplog):
    run = tuned[0]
    with caplog.at_level(logging.INFO, logger="kgzsl"):
        clf = ZeroShotClassifier.load(run, device="cpu")
    assert "fine-tuned" in clf.backbone.weights and "using the fine-tuned backbone" in caplog.text
    assert "only meaningful with the weights" not in caplog.text  # no spurious weights warning
    plain = ZeroShotClassifier.load(run, device="cpu", finetuned=False)
    assert "fine-tuned" not in plain.backbone.weights
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(clf.backbone(x), plain.backbone(x), atol=1e-4)
    summary_file = run / "finetune" / "finetune.json"
    text = summary_file.read_text()
    try:  # an unfinished fine-tune is not used
        summary_file.write_text(text.replace('"finished": true', '"finished": false'))
        assert "fine-tuned" not in ZeroShotClassifier.load(run, device="cpu").backbone.weights
    finally:
        summary_file.write_text(text)


def test_loss_decreases_on_a_toy_problem(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    _write_images(tmp_path / "data" / TABBY, 3, colour=(200, 60, 40))
    _write_images(tmp_path / "data" / TENCH, 3, colour=(40, 80, 200))
    result = finetune_run(run, tmp_path / "data", epochs=4, patience=4, val_fraction=0.34, **QUICK)
    history = result["history"]
    assert [h["steps"] for h in history] == [1, 2, 3, 4] and result["stopped"] == "epochs"
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < 0.7 * history[0]["val_loss"]  # eval mode: no dropout noise


def test_resume_after_an_interruption_gives_the_uninterrupted_result(tiny_run, tmp_path, monkeypatch):
    data = tmp_path / "data"
    _write_images(data / TABBY, 3, seed=1)
    _write_images(data / AIRLINER, 3, seed=2)
    settings = {**QUICK, "batch_size": 2, "epochs": 2, "patience": 5, "val_fraction": 0.34}
    whole = _copy_run(tiny_run, tmp_path / "whole")
    expected = finetune_run(whole, data, **settings)

    broken = _copy_run(tiny_run, tmp_path / "broken")
    save = ft.save_checkpoint

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune_run(broken, data, **settings)
    monkeypatch.setattr(ft, "save_checkpoint", save)
    ckpt = broken / "finetune" / "checkpoint.safetensors"
    assert ckpt.is_file() and not json.loads((broken / "finetune" / "finetune.json").read_text())["finished"]
    assert ZeroShotClassifier.load(broken, device="cpu").backbone.weights.startswith("efficientnet_lite0")

    with pytest.raises(CheckpointError, match=r"another fine-tuning setup: settings .*'lr': 0\.0001"):
        finetune_run(broken, data, **{**settings, "lr": 1e-3}, resume=True)
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        finetune_run(broken, data, **settings, resume=True)
    ckpt.write_bytes(good)

    resumed = finetune_run(broken, data, **{**settings, "workers": 2}, resume=True)  # augmentation is per image
    strip = lambda h: [{k: v for k, v in e.items() if "seconds" not in k} for e in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(expected["history"]) and len(expected["history"]) == 2
    assert resumed["best_epoch"] == expected["best_epoch"] and resumed["weights_digest"] == expected["weights_digest"]
    a = load_tensors(whole / "finetune" / "backbone.safetensors")
    b = load_tensors(broken / "finetune" / "backbone.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not ckpt.exists()
    with pytest.raises(InputError, match="is finished: --resume has nothing to continue"):  # as train --resume
        finetune_run(broken, data, **settings, resume=True)


def test_too_few_classes_is_a_clear_error(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    _write_images(tmp_path / "data" / TABBY, 2)
    _write_images(tmp_path / "data" / CAT, 2)
    with pytest.raises(ValueError, match="1 usable class folder"):
        finetune_run(run, tmp_path / "data", **QUICK)
    assert main(["-q", "finetune", str(run), "--data", str(tmp_path / "missing")]) == 1


def test_class_choice_skips_unseen_foreign_and_held_out_folders(tmp_path, caplog):
    n1, n2, n3, n4, n5 = (f"n0000000{i}" for i in range(1, 6))
    for name in [n1, n2, n3, n4, n5, "notawnid"]:
        (tmp_path / name).mkdir()
    with caplog.at_level(logging.WARNING):
        assert select_classes(tmp_path, [n1, n2, n3, n4], [n1, n2, n4, n5], holdout=[n4]) == [n1, n2]
    assert f"{n3} (not a node" in caplog.text and f"{n4} (held out" in caplog.text
    assert f"{n5} (not a seen class" in caplog.text and "notawnid (not named by a wnid)" in caplog.text
    (tmp_path / "split.txt").write_text(f"{n1}\n")
    with pytest.raises(InputError, match="split.txt is a file, not a folder of images"):
        select_classes(tmp_path / "split.txt", [n1, n2], [n1, n2])


def test_split_augmentation_and_unreadable_images(tmp_path):
    items = [(Path(f"{w}/{i}.jpg"), w) for w in ("a", "b") for i in range(10)] + [(Path("c/0.jpg"), "c")]
    train, val = split_per_class(items, 0.2, seed=0)
    assert sorted(w for _, w in val) == ["a", "a", "b", "b"] and len(train) == 17
    assert split_per_class(items, 0.2, seed=0) == (train, val) and split_per_class(items, 0.2, seed=1)[1] != val
    lite = load_backbone("efficientnet-lite0", weights=None, device="cpu").transform
    aug = train_transform(lite)
    crop = aug.transforms[0]
    assert crop.size == (224, 224) and crop.interpolation.value == "bicubic"
    assert tuple(aug.transforms[-1].mean) == lite.mean == (127 / 255,) * 3
    paths = _write_images(tmp_path / "x", 2)
    (tmp_path / "x" / "bad.png").write_text("hello")
    ds = ImageFiles([paths[0], tmp_path / "x" / "bad.png", paths[1]], aug, labels=[0, 1, 0], seed=3)
    _, images, labels, errors = collate_images([ds[i] for i in range(3)])
    assert images.shape == (2, 3, 224, 224) and labels.tolist() == [0, 0] and errors[0][0] == 1
    assert "bad.png" in errors[0][1]
    first = ds[0][1]
    assert torch.equal(first, ds[0][1])  # seeded per (seed, epoch, image): the same crop again ...
    ds.epoch = 1
    assert not torch.equal(first, ds[0][1])  # ... and another one next epoch


_DDP_SCRIPT = """
import json, sys, torch
import kgzsl.tasks.finetune as ft
from kgzsl.utils.io import save_tensors
nets = []
init = ft._FixedHead.__init__
ft._FixedHead.__init__ = lambda self, *a: (init(self, *a), nets.append(self))[0]
result = ft.finetune_run(sys.argv[1], sys.argv[2], epochs=1, batch_size=4, val_fraction=0.25, device="cpu",
                         workers=0, progress=False, max_steps=2)
rank = torch.distributed.get_rank()
save_tensors(f"{sys.argv[3]}/rank{rank}.safetensors", {k: v.clone() for k, v in nets[0].body.state_dict().items()})
json.dump(result, open(f"{sys.argv[3]}/rank{rank}.json", "w"))
torch.distributed.destroy_process_group()
"""


def test_two_processes_under_torchrun_end_with_identical_weights(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    for k, wnid in enumerate([TABBY, TENCH, AIRLINER]):
        _write_images(tmp_path / "data" / wnid, 3, seed=k)
    (tmp_path / "ddp.py").write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "ddp.py"), str(run), str(tmp_path / "data"), str(tmp_path)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["finished"] and r1["finished"] and r0["processes"] == 2 and r0["history"][-1]["steps"] == 2
    assert r0["weights_digest"] == r1["weights_digest"] and r0["best_val_top1"] == r1["best_val_top1"]
    w0, w1 = (load_tensors(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    original = load_backbone("efficientnet-lite0", device="cpu").body.state_dict()
    assert any(not torch.equal(w0[k], original[k]) for k in w0)  # it did train
    on_disk = load_tensors(run / "finetune" / "backbone.safetensors")
    assert all(torch.equal(on_disk[k], w0[k]) for k in w0)


def _two_flat_classes(tiny_run: Path, tmp_path: Path, per_class: int) -> Path:
    """A copy of the run, and ``tmp_path/data`` with ``per_class`` flat images of tabby and of tench."""
    _write_images(tmp_path / "data" / TABBY, per_class, colour=(200, 60, 40))
    _write_images(tmp_path / "data" / TENCH, per_class, colour=(40, 80, 200))
    return _copy_run(tiny_run, tmp_path / "run")


def test_too_few_images_for_a_validation_split_is_said(tiny_run, tmp_path, caplog):
    run = _two_flat_classes(tiny_run, tmp_path, 3)
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        finetune_run(run, tmp_path / "data", epochs=1, patience=1, val_fraction=0.1, **QUICK)
    assert "no validation images: 6 images over 2 classes give none at val_fraction 0.1 (a class needs 6 images" \
        in caplog.text


def test_few_validation_images_and_a_replaced_fine_tune_are_said(tiny_run, tmp_path, caplog):
    """One validation photo chose "100% at epoch 1"; a second fine-tune without --resume dropped the first silently."""
    run = _two_flat_classes(tiny_run, tmp_path, 4)
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        finetune_run(run, tmp_path / "data", epochs=1, patience=1, val_fraction=0.25, **QUICK)
    assert "only 2 validation image(s): the epoch they choose, and the validation top-1 reported, are mostly " \
           "chance" in caplog.text and "replacing" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        finetune_run(run, tmp_path / "data", epochs=1, patience=1, val_fraction=0.25, **QUICK)
    assert f"replacing the finished fine-tune in {run / 'finetune'} with this one, from the backbone's own " \
           "weights" in caplog.text


def test_cli_commands_take_the_original_backbone_when_asked(tuned, tmp_path, monkeypatch, capsys):
    run = tuned[0]
    image = str(run.parent / "data" / TENCH / "img0.png")
    tuned_clf, plain = ZeroShotClassifier.load(run, device="cpu"), ZeroShotClassifier.load(run, device="cpu",
                                                                                           finetuned=False)
    labels = ["tabby", "tench", "airliner", "cat"]

    def cli_scores(*extra: str) -> list[float]:
        assert main(["-q", "predict", str(run), image, "--labels", ",".join(labels), "--json", "--device", "cpu",
                     *extra]) == 0
        return sorted(p["score"] for p in json.loads(capsys.readouterr().out)[0]["predictions"])

    def api_scores(clf: ZeroShotClassifier) -> list[float]:
        return sorted(p["score"] for p in clf.predict(image, labels, top_k=4))

    assert api_scores(tuned_clf) != api_scores(plain)  # the two backbones tell apart on this image
    assert cli_scores() == pytest.approx(api_scores(tuned_clf), abs=1e-4)
    assert cli_scores("--original-backbone") == pytest.approx(api_scores(plain), abs=1e-4)
    assert main(["-q", "explain", str(run), image, "--label", "cat", "--json", "--device", "cpu",
                 "--original-backbone"]) == 0
    from kgzsl.tasks.explain import explain

    assert explain(plain, image, "cat")["logit"] != explain(tuned_clf, image, "cat")["logit"]
    assert json.loads(capsys.readouterr().out)["logit"] == explain(plain, image, "cat")["logit"]
    seen: dict[str, object] = {}  # serve and evaluate pass the choice on
    monkeypatch.setattr("kgzsl.serve.server.serve", lambda *a, **kw: seen.update(serve=kw["finetuned"]))
    monkeypatch.setattr("kgzsl.tasks.evaluate.evaluate_run", lambda *a, **kw: seen.update(evaluate=kw["finetuned"]) or {})
    monkeypatch.setattr("kgzsl.tasks.evaluate.format_result", lambda result: "")
    assert main(["-q", "serve", str(run), "--original-backbone"]) == 0
    assert main(["-q", "evaluate", str(run), "--data", str(tmp_path), "--split", "2-hops", "--original-backbone",
                 "--device", "cpu"]) == 0
    assert seen == {"serve": False, "evaluate": False}
