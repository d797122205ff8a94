"""B5 on a tiny ImageFolder: every photo among its group's classes, through predict."""

from __future__ import annotations

import shutil

import pytest

from kgzsl.errors import InputError
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.tasks.benchmarks.photos import format_photos, read_groups, run_photos


@pytest.fixture
def photo_folder(tmp_path):
    from kgzsl.vision.samples import demo_photos

    photos = {p.stem: p for p in demo_photos()}
    if not {"chelsea", "motorcycle_left", "coffee"} <= set(photos):
        pytest.skip("scikit-image's sample photos are not installed")
    root = tmp_path / "photos"
    for wnid, name in [("n02123045", "chelsea"), ("n03790512", "motorcycle_left"), ("n03063599", "coffee")]:
        (root / wnid).mkdir(parents=True)
        shutil.copy(photos[name], root / wnid / f"{name}.png")
    (root / "groups.tsv").write_text("wnid\tsynset\tgroup\nn02123045\ttabby.n.01\tanimal\n"
                                     "n03790512\tmotorcycle.n.01\tthings\nn03063599\tcoffee_mug.n.01\tthings\n")  # tabby, mug: ImageNet-1k
    return root


def test_each_photo_is_scored_among_its_group_and_unknown_classes_are_added(tiny_run, photo_folder, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    assert "n03790512" not in clf.wnids and "n03063599" not in clf.wnids  # not nodes of the tiny graph
    result = run_photos(clf, photo_folder, progress=False)
    assert sorted(result["added"]) == ["n03063599", "n03790512"] and result["images"] == 3
    rows = {(r["method"], r["subset"]): r for r in result["rows"]}
    assert rows[("predict", "group:animal")] == {"method": "predict", "subset": "group:animal", "top1": 1.0, "n": 1}
    assert rows[("chance", "all")]["top1"] == pytest.approx((1 + 0.5 + 0.5) / 3, abs=1e-4)
    assert rows[("predict", "seen")]["n"] == 2 and rows[("predict", "unseen")]["n"] == 1  # motorcycle.n.01 is not
    assert {m for m, _ in rows} == {"predict", "hierarchy-max", "chance"}
    assert all(0 <= r["top1"] <= 1 for r in result["rows"])
    assert "group:things" in format_photos(result)


def test_groups_file_errors_name_the_line(tmp_path):
    (tmp_path / "groups.tsv").write_text("n02123045\n")
    with pytest.raises(InputError, match="groups.tsv:1"):
        read_groups(tmp_path, ["n02123045"])
    (tmp_path / "groups.tsv").write_text("n02123045\tanimal\n")
    with pytest.raises(InputError, match="no group for the class folders n01440764"):
        read_groups(tmp_path, ["n02123045", "n01440764"])
    (tmp_path / "groups.tsv").unlink()
    assert read_groups(tmp_path, ["a", "b"]) == {"a": "all", "b": "all"}
