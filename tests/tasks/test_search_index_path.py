"""`build_index` writes only over a kgzsl image index, and one unreadable file never stops it.

Fast: a fake backbone (mean colours) over three tiny PNGs.
"""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from kgzsl.errors import OutputError
from kgzsl.tasks.search import SearchIndexError, _read_index, build_index, check_index_path, search
from kgzsl.utils.io import save_tensors

from robust_helpers import FakeBackbone


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate([(200, 10, 10), (10, 200, 10), (10, 10, 200)]):
        Image.new("RGB", (16, 12), colour).save(folder / f"{i}.png")
    return folder


def _index(photos, path, **kw):
    return build_index(FakeBackbone(), photos, path, progress=False, **kw)


@pytest.mark.parametrize("name, content", [
    ("victim.png", None),  # a photo
    ("notes.txt", b"my notes\n"),
    ("rows.safetensors", "tensors"),  # another kgzsl tensor file: not an index either
])
def test_a_file_that_is_not_an_index_is_never_overwritten(photos, tmp_path, name, content):
    target = tmp_path / name
    if content is None:
        Image.new("RGB", (8, 8), (1, 2, 3)).save(target)
    elif content == "tensors":
        save_tensors(target, {"features": torch.zeros(2, 3)}, metadata={"backbone": "fakenet"})
    else:
        target.write_bytes(content)
    before = target.read_bytes()
    with pytest.raises(OutputError, match=rf"{name} exists and is not a kgzsl image index, so it is not "
                                          r"overwritten; choose another index_path, or delete the file") as exc:
        _index(photos, target)
    assert exc.value.cli_text().startswith(f"--out {target} exists and is not a kgzsl image index")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photos", name])  # no temporary left


def test_a_folder_is_refused_before_any_work(photos, tmp_path, monkeypatch):
    import kgzsl.vision.folders

    monkeypatch.setattr(kgzsl.vision.folders, "list_images", lambda *a: pytest.fail("listed the images"))
    (tmp_path / "existdir").mkdir()
    with pytest.raises(OutputError, match=r"existdir: it is a folder; give the path of a file, e\.g\. "
                                          r".*existdir/photos\.index"):
        _index(photos, tmp_path / "existdir")


def test_an_index_or_an_empty_file_is_written_and_updated(photos, tmp_path):
    (tmp_path / "empty.index").touch()  # nothing to lose
    assert _index(photos, tmp_path / "empty.index")["new"] == 3
    assert check_index_path(tmp_path / "empty.index") == tmp_path / "empty.index"
    assert _index(photos, tmp_path / "empty.index")["reused"] == 3


@pytest.mark.parametrize("cut", ["data", "header"])
def test_a_damaged_index_is_built_again_with_one_warning(photos, tmp_path, caplog, cut):
    index = tmp_path / "photos.index"
    _index(photos, index)
    whole = index.read_bytes()
    index.write_bytes(whole[:-8] if cut == "data" else whole[:80])
    with pytest.raises(SearchIndexError, match=rf"photos.index is a damaged kgzsl image index: .*; build it "
                                               rf"again with `kgzsl index RUN DIR --out {index}`"):
        search(None, index, "cat")
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        stats = _index(photos, index)
    assert stats == {"images": 3, "new": 3, "reused": 0, "removed": 0, "failed": 0}
    assert [r.getMessage() for r in caplog.records] == [
        f"{index} is a damaged kgzsl image index (its data is truncated or corrupt): building it again from every "
        "image"]


def test_search_says_a_file_that_is_no_index_is_none(tmp_path):
    (tmp_path / "notes.txt").write_text("my notes\n")
    with pytest.raises(SearchIndexError, match=r"notes.txt is not a kgzsl image index \(`kgzsl index` writes "
                                               r"those\); give an index file, or build one with"):
        search(None, tmp_path / "notes.txt", "cat")


def test_a_broken_symlink_is_skipped_with_a_warning_and_counted_unreadable(photos, tmp_path, caplog):
    (photos / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        stats = _index(photos, tmp_path / "photos.index")
    assert stats == {"images": 3, "new": 3, "reused": 0, "removed": 0, "failed": 1}
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping image: {photos / 'gone.jpg'} is a broken symbolic link: its target {tmp_path / 'nowhere.jpg'} "
        "does not exist; remove the link or make it point to an image"]
    assert _index(photos, tmp_path / "photos.index")["reused"] == 3


class _InterruptedBackbone(FakeBackbone):
    """Ctrl-C arrives during its ``stop``-th forward pass."""

    def __init__(self, stop: int) -> None:
        super().__init__()
        self.calls, self.stop = 0, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        return super().forward(x)


def test_an_interrupted_index_keeps_its_finished_parts(photos, tmp_path, monkeypatch, caplog):
    import kgzsl.tasks.search

    for i in range(3, 5):
        Image.new("RGB", (16, 12), (i * 40, 0, 0)).save(photos / f"{i}.png")
    monkeypatch.setattr(kgzsl.tasks.search, "_PART", 2)
    index = tmp_path / "photos.index"
    with caplog.at_level(logging.WARNING, logger="kgzsl"), pytest.raises(KeyboardInterrupt):
        build_index(_InterruptedBackbone(stop=4), photos, index, progress=False, batch_size=1)
    assert [r.getMessage() for r in caplog.records] == [
        f"index {index}: interrupted; it keeps 2 images (2 of the 5 new ones); run the same command again to "
        "index the rest"]
    files, _, _ = _read_index(index)
    assert [f["path"] for f in files] == [str(photos / "0.png"), str(photos / "1.png")]  # the first part only
    assert _index(photos, index) == {"images": 5, "new": 3, "reused": 2, "removed": 0, "failed": 0}
    assert [f["path"] for f in _read_index(index)[0]] == [str(photos / f"{i}.png") for i in range(5)]
    _index(photos, tmp_path / "whole.index")
    assert torch.equal(_read_index(index)[1], _read_index(tmp_path / "whole.index")[1])


def test_a_file_reached_through_a_link_is_indexed_once(photos, tmp_path):
    (photos / "again.png").symlink_to(photos / "0.png")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "link").symlink_to(photos, target_is_directory=True)
    stats = build_index(FakeBackbone(), tmp_path / "more", tmp_path / "photos.index", progress=False)
    assert stats == {"images": 3, "new": 3, "reused": 0, "removed": 0, "failed": 0}
    files, _, _ = _read_index(tmp_path / "photos.index")
    # once each, by the path it was first listed by (through the link to the folder), not the link's target
    assert [f["path"] for f in files] == [str((tmp_path / "more" / "link" / f"{i}.png").absolute()) for i in range(3)]
