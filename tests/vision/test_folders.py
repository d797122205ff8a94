"""The one image lister and image Dataset: which files count, their order, bad images as messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kgzsl.vision.folders import ImageFiles, collate_images, image_folder, item_seed, list_images


def _png(path: Path, size: tuple[int, int] = (8, 6), colour: tuple[int, int, int] = (200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)


def test_list_images_keeps_image_files_sorted_and_skips_hidden_ones(tmp_path):
    for name in ["b.png", "A.JPEG", "sub/c.gif", "sub/.hidden.png", ".git/x.png", "notes.txt", "d.webp"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == \
        ["A.JPEG", "b.png", "d.webp", "sub/c.gif"]
    assert list_images(tmp_path / "sub") == [tmp_path / "sub" / "c.gif"]
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        list_images(tmp_path / "missing")


def test_image_folder_lists_each_wnid_class_through_list_images(tmp_path):
    for name in ["n00000002/b.png", "n00000002/deep/a.png", "n00000001/z.jpg", "n00000001/.x.jpg", "misc/q.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    items = image_folder(tmp_path)
    assert [(p.relative_to(tmp_path).as_posix(), w) for p, w in items] == [
        ("n00000001/z.jpg", "n00000001"), ("n00000002/b.png", "n00000002"), ("n00000002/deep/a.png", "n00000002")]
    assert [w for _, w in image_folder(tmp_path, wnids=["misc"])] == ["misc"]  # a named class need not be a wnid
    with pytest.raises(ValueError, match="no class sub-folders named by wnid"):
        image_folder(tmp_path / "misc")


def test_image_folder_names_each_folder_it_skips(tmp_path, caplog):
    """A folder named in words and an empty class folder get a warning each; hidden folders none."""
    for name in ["n00000001/a.png", "cats/b.png", ".git/c.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "n00000002").mkdir()
    with caplog.at_level("WARNING", logger="kgzsl.vision.folders"):
        assert [w for _, w in image_folder(tmp_path)] == ["n00000001"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"skipping the folder {tmp_path / 'cats'} as a class: its name is not a WordNet id")
    assert warnings[1].startswith(f"skipping the class folder {tmp_path / 'n00000002'}: no image files in it")
    caplog.clear()
    with caplog.at_level("WARNING", logger="kgzsl.vision.folders"):
        image_folder(tmp_path, wnids=["n00000001"])  # the caller chose its classes: others are skipped quietly
    assert not caplog.records
    (tmp_path / "n00000001" / "a.png").unlink()
    (tmp_path / "n00000001").rmdir()
    (tmp_path / "n00000002").rmdir()
    with pytest.raises(ValueError, match=r"no class sub-folders named by wnid .*; its sub-folders \(cats\) are not"):
        image_folder(tmp_path)


def test_image_files_turn_bad_images_into_messages_and_collate_drops_them(tmp_path):
    good = _png(tmp_path / "good.png")
    wide = _png(tmp_path / "wide.png", size=(9, 6))
    (tmp_path / "bad.png").write_text("not an image")
    ds = ImageFiles([good, tmp_path / "bad.png", wide, good], _to_tensor, labels=[3, 4, 5, 6])
    assert len(ds) == 4 and ds[1][1] is None and "bad.png" in ds[1][3]
    indices, images, labels, errors = collate_images([ds[i] for i in range(4)])
    assert indices == [0, 3] and images.shape == (2, 3, 6, 8) and labels.tolist() == [3, 6]
    assert [i for i, _ in errors] == [1, 2] and "expected (3, 6, 8)" in errors[1][1]
    assert ImageFiles([good], _to_tensor)[0][2] == -1  # no labels: -1
    assert collate_images([ds[1]])[1] is None
    with pytest.raises(ValueError, match="2 labels for 1 images"):
        ImageFiles([good], _to_tensor, labels=[0, 1])


def test_a_seeded_random_transform_repeats_per_epoch_and_leaves_the_global_rng(tmp_path):
    good = _png(tmp_path / "good.png")
    ds = ImageFiles([good, good], lambda image: torch.rand(2), seed=7)
    state = torch.get_rng_state()
    first = ds[0][1]
    assert torch.equal(first, ds[0][1]) and not torch.equal(first, ds[1][1])  # per image ...
    ds.epoch = 1
    assert not torch.equal(first, ds[0][1])  # ... and per epoch
    assert torch.equal(torch.get_rng_state(), state)
    assert item_seed(7, 0, 0) == item_seed(7, 0, 0) != item_seed(7, 0, 1) and 0 <= item_seed(7, 0, 0) < 2 ** 63


def test_listing_and_loading_images_never_import_torchvision():
    # importing torchvision costs about as long as torch itself; predict and Lite0 feature extraction avoid it
    code = ("import sys, kgzsl.inference.classifier, kgzsl.vision.folders, kgzsl.vision.extract; "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
