"""Image search: incremental index and text → image ranking with the tiny run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kgzsl.errors import InputError
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.tasks.search import SearchIndexError, build_index, search

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clf(tiny_run):
    return ZeroShotClassifier.load(tiny_run, device="cpu")


@pytest.fixture
def photos(tmp_path):
    import skimage

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        shutil.copy(Path(os.path.dirname(skimage.__file__)) / "data" / name, folder / name)
    return folder


def test_index_is_incremental_and_search_finds_the_cat(clf, photos, tmp_path):
    index = tmp_path / "photos.index"
    assert build_index(clf.backbone, photos, index, progress=False) == \
        {"images": 3, "new": 3, "reused": 0, "removed": 0, "failed": 0}
    assert build_index(clf.backbone, photos, index, progress=False)["reused"] == 3
    (photos / "broken.jpg").write_bytes(b"not an image")
    os.utime(photos / "coffee.png", ns=(1, 1))  # a changed file is processed again
    stats = build_index(clf.backbone, photos, index, progress=False)
    assert stats == {"images": 3, "new": 1, "reused": 2, "removed": 0, "failed": 1}
    (photos / "rocket.jpg").unlink()
    assert build_index(clf.backbone, photos, index, progress=False)["removed"] == 1

    build_index(clf.backbone, photos, index, progress=False)
    hits = search(clf, index, "tabby", top_k=5)
    assert Path(hits[0]["path"]).name == "chelsea.png" and len(hits) == 2
    assert hits[0]["score"] > hits[1]["score"]
    assert {(h["synset"], h["wnid"]) for h in hits} == {("tabby.n.01", "n02123045")}  # the sense each was scored by
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="top_k must be a whole number >= 1"):
            search(clf, index, "tabby", top_k=bad)


def test_search_ranks_three_photos_and_added_concepts(clf, photos, tmp_path):
    index = tmp_path / "i.index"
    build_index(clf.backbone, photos, index, progress=False)
    assert Path(search(clf, index, "tabby")[0]["path"]).name == "chelsea.png"
    clf.add_concept("Burmese cat")
    assert Path(search(clf, index, "Burmese cat")[0]["path"]).name == "chelsea.png"


def test_bad_index_is_refused(clf, tmp_path):
    (tmp_path / "x.index").write_bytes(b"junk")
    with pytest.raises((SearchIndexError, ValueError)):
        search(clf, tmp_path / "x.index", "tabby")


def test_cli_index_and_search(tiny_run, photos, tmp_path, capsys):
    from kgzsl.cli import main

    index = tmp_path / "cli.index"
    assert main(["-q", "index", str(tiny_run), str(photos), "--out", str(index), "--no-progress",
                 "--device", "cpu"]) == 0
    assert "3 images (3 new" in capsys.readouterr().out
    assert main(["-q", "search", str(tiny_run), str(index), "tabby", "--json", "--device", "cpu"]) == 0
    hits = __import__("json").loads(capsys.readouterr().out)
    assert Path(hits[0]["path"]).name == "chelsea.png"
    assert main(["-q", "search", str(tiny_run), str(index), "tabby", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tabby = tabby.n.01: a cat with a grey or tawny coat")  # the sense, and its meaning
    assert lines[1].endswith("chelsea.png")
    # several queries, the run loaded once; a bad one is reported and the others answered
    assert main(["-q", "search", str(tiny_run), str(index), "tabby", "tabbby", "tench", "--json", "--top-k", "1",
                 "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    answers = __import__("json").loads(captured.out)
    assert [a["query"] for a in answers] == ["tabby", "tench"]
    assert Path(answers[0]["hits"][0]["path"]).name == "chelsea.png" and answers[1]["hits"][0]["synset"] == "tench.n.01"
    assert "tabbby: unknown label 'tabbby'" in captured.err and "1 of 3 queries failed" in captured.err


def test_a_symbolic_link_is_found_by_its_own_path_and_an_empty_folder_is_an_error(clf, photos, tmp_path):
    mine = tmp_path / "mine" / "cats"
    mine.mkdir(parents=True)
    (mine / "my_cat.png").symlink_to(photos / "chelsea.png")  # a folder of links, as a lab builds one
    index = tmp_path / "mine.index"
    build_index(clf.backbone, tmp_path / "mine", index, progress=False)
    assert search(clf, index, "tabby")[0]["path"] == str(mine / "my_cat.png")  # not the link's target
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InputError, match="is a folder without image files"):
        build_index(clf.backbone, tmp_path / "empty", tmp_path / "empty.index", progress=False)
    assert not (tmp_path / "empty.index").exists()


def test_a_moved_folder_is_indexed_again_without_reading_its_images(clf, photos, tmp_path, caplog):
    index = tmp_path / "moved.index"
    build_index(clf.backbone, photos, index, progress=False)
    moved = tmp_path / "elsewhere" / "photos"
    moved.parent.mkdir()
    shutil.move(str(photos), str(moved))  # sizes and modification times kept, as mv and cp -a keep them
    with caplog.at_level("WARNING", logger="kgzsl.tasks.search"):
        search(clf, index, "tabby", top_k=1)
    assert "no longer where" in caplog.text and f"kgzsl index RUN NEWDIR --out {index}" in caplog.text
    stats = build_index(clf.backbone, moved, index, progress=False)
    assert stats == {"images": 3, "new": 0, "reused": 3, "removed": 0, "failed": 0}  # nothing read again
    assert search(clf, index, "tabby", top_k=1)[0]["path"] == str(moved / "chelsea.png")
    (moved / "coffee.png").unlink()
    assert build_index(clf.backbone, moved, index, progress=False)["removed"] == 1
