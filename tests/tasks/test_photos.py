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


def _photo_layout(root):
    """n02123045 and cats with a photo each, an empty class folder, a hidden folder, a groups file."""
    for folder in ("n02123045", "cats", "n01440764", ".git"):
        (root / folder).mkdir(parents=True)
    (root / "n02123045" / "a.png").write_bytes(b"listed, never decoded")
    (root / "cats" / "b.png").write_bytes(b"")
    (root / ".git" / "c.png").write_bytes(b"")
    (root / "groups.tsv").write_text("n02123045\tanimal\n")


def test_folders_named_by_labels_are_classes_and_empty_ones_are_named(tmp_path, caplog):
    from kgzsl.tasks.benchmarks.photos import photo_items

    _photo_layout(tmp_path)
    with caplog.at_level("WARNING"):
        items = photo_items(tmp_path)
    assert items == [(tmp_path / "cats" / "b.png", "cats"), (tmp_path / "n02123045" / "a.png", "n02123045")]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"skipping the class folder {tmp_path / 'n01440764'}: no image files in it"]  # not .git


def test_a_folder_without_photos_is_an_error_naming_the_layout(tmp_path, caplog):
    from kgzsl.errors import NotFoundError
    from kgzsl.tasks.benchmarks.photos import photo_items

    (tmp_path / "n01440764").mkdir()  # only an empty class folder
    with pytest.raises(InputError, match=rf"^no photos in {tmp_path}: expected {tmp_path}/<class>/\*\.jpg, one "
                       rf"sub-folder per class, named by a label as predict takes it \(like {tmp_path}/golden_retriever/\)"):
        photo_items(tmp_path)
    assert "n01440764: no image files" in caplog.text
    (tmp_path / "n01440764").rmdir()
    (tmp_path / "loose.jpg").write_bytes(b"")  # a photo, but no class folder
    with pytest.raises(InputError, match=rf"^no photos in {tmp_path}: expected"):
        photo_items(tmp_path)
    with pytest.raises(NotFoundError, match=r"photo folder not found: .*missing.*<class>/\*\.jpg"):
        photo_items(tmp_path / "missing")


@pytest.fixture
def named_folder(photo_folder):
    """The photos of :func:`photo_folder` in folders named by words: a node, a WordNet noun that is not one, and a
    word WordNet does not know; groups keyed by folder name."""
    root = photo_folder.parent / "named"
    for wnid, name in [("n02123045", "tabby"), ("n03790512", "motorcycle"), ("n03063599", "zzqx mug")]:
        shutil.copytree(photo_folder / wnid, root / name)
    (root / "groups.tsv").write_text("class\tgroup\ntabby\tanimal\nmotorcycle\tthings\nzzqx mug\tthings\n")
    return root


def test_folders_named_by_words_resolve_as_predict_resolves_them(tiny_run, named_folder, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = sorted(p.name for p in run.iterdir())
    (named_folder / "empty").mkdir()
    (named_folder / "tabby" / "broken.jpg").write_bytes(b"not a jpeg")
    (named_folder / "loose.png").write_bytes(b"")
    clf = ZeroShotClassifier.load(run, device="cpu")
    with caplog.at_level("WARNING"):
        result = run_photos(clf, named_folder, progress=False)
    assert result["skipped_classes"] == ["empty", "zzqx mug"] and result["images"] == 2  # the broken photo: left out
    assert [s["reason"] for s in result["skipped"]][0] == "no image files in it"
    assert result["skipped"][1]["reason"].startswith("names no class of the run: unknown label 'zzqx mug'")
    assert [u["image"] for u in result["unreadable"]] == [str(named_folder / "tabby" / "broken.jpg")]
    assert f"class folder {named_folder / 'zzqx mug'} names no class of the run" in caplog.text
    assert "ignoring 1 image file(s) directly in" in caplog.text and "loose.png" in caplog.text
    assert result["added"] == ["n03790512"]  # motorcycle.n.01: a WordNet noun, added on first use
    assert sorted(p.name for p in run.iterdir()) == before  # added in memory: the run is left as it was
    assert clf.store_added_labels  # and the classifier's setting restored
    assert [c["class"] for c in result["per_class"]] == ["motorcycle", "tabby"]
    assert {p["image"]: p["right"] for p in result["photos"]}[str(named_folder / "tabby" / "chelsea.png")]
    resolved = {r["class"]: r for r in result["resolved"]}
    assert resolved["tabby"]["wnid"] == "n02123045" and resolved["tabby"]["seen"]
    assert resolved["motorcycle"]["synset"] == "motorcycle.n.01" and not resolved["motorcycle"]["seen"]
    assert resolved["motorcycle"]["also"] == [] and not resolved["motorcycle"]["ambiguous"]
    assert resolved["tabby"]["ambiguous"]  # WordNet also has tabby.n.02, a female cat
    rows = {(r["method"], r["subset"]): r for r in result["rows"]}
    assert rows[("predict", "group:animal")]["top1"] == 1.0 and rows[("chance", "group:things")]["top1"] == 1.0
    assert "tabby = tabby.n.01: " in format_photos(result)


def test_groups_are_matched_to_folders_as_labels_are_and_unknown_lines_are_named(tmp_path, caplog):
    (tmp_path / "groups.tsv").write_text("class\tgroup\nlight_bulb\thousehold\nLamp\thousehold\nbogus\tx\n")
    with caplog.at_level("WARNING"):
        groups = read_groups(tmp_path, ["light bulb", "lamp"])
    assert groups == {"light bulb": "household", "lamp": "household"}
    assert "names no class folder" in caplog.text and "4: 'bogus'" in caplog.text


def test_one_group_gives_no_group_rows(tiny_run, photo_folder, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (photo_folder / "groups.tsv").unlink()
    result = run_photos(ZeroShotClassifier.load(run, device="cpu"), photo_folder, progress=False)
    assert {r["subset"] for r in result["rows"]} == {"all", "seen", "unseen", "mean-per-class"}


def test_two_folders_of_a_group_naming_one_class_is_an_error(tiny_run, photo_folder, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    root = tmp_path / "twice"
    shutil.copytree(photo_folder / "n02123045", root / "cat")
    shutil.copytree(photo_folder / "n02123045", root / "cats")
    with pytest.raises(InputError, match=rf"the class folders of {root} \(group 'all'\): labels 'cat' and 'cats' "
                                         "both resolve to cat.n.01"):
        run_photos(ZeroShotClassifier.load(run, device="cpu"), root, progress=False)


def test_the_report_lists_the_most_frequent_mistakes_and_the_senses_read():
    rows = [{"method": "predict", "subset": "all", "top1": 0.25, "n": 4}]
    resolved = [{"class": "n04587559", "wnid": "n04587559", "synset": "windmill.n.01", "seen": False, "ambiguous": False},
                {"class": "solar dish", "wnid": "n04258138", "synset": "solar_dish.n.01", "seen": True, "ambiguous": False},
                {"class": "plate", "wnid": "n03959936", "synset": "plate.n.02", "seen": False, "ambiguous": True,
                 "also": ["plate.n.08"]}]
    mistakes = [{"class": "n04587559", "predicted": "solar dish", "n": 3, "of": 3}]
    text = format_photos({"rows": rows, "resolved": resolved, "mistakes": mistakes})
    lines = text.splitlines()
    assert lines[2].startswith("(predict: kgzsl's first answer among the photo's group of classes; hierarchy-max: ")
    assert lines[3:5] == ["most frequent mistakes (class -> predict's answer: photos):",
                          "  windmill.n.01 -> solar dish: 3 of 3"]
    assert lines[5].startswith("class folders named by a word of several senses, as read (1; rename a folder")
    assert lines[6].startswith("  plate = plate.n.02 (or, as a photo fits: plate.n.08): a sheet of metal") and len(lines) == 7
    skipped = format_photos({"rows": rows, "skipped": [{"class": "scisors", "reason": "names no class of the run: ..."},
                                                       {"class": "empty", "reason": "no image files in it"}],
                             "unreadable": [{"image": "a/b.jpg", "error": "cannot load image a/b.jpg: truncated"}]})
    assert skipped.splitlines()[3:] == ["skipped class folder 'scisors': names no class of the run: ...",
                                        "skipped class folder 'empty': no image files in it",
                                        "1 unreadable photo(s) left out, e.g. cannot load image a/b.jpg: truncated"]


def test_no_scorable_photo_is_an_error(tmp_path):
    """Every class fails to be added to the run: an error, not a table of nan."""

    class Run:
        wnids = ["n02123045"]
        store_added_labels = True

        def add_concept(self, wnid):
            raise InputError(f"{wnid} is not a WordNet 3.0 noun synset")

        def add_concepts(self, wnids):
            raise InputError(f"{wnids[0]} is not a WordNet 3.0 noun synset")

    (tmp_path / "n09999999").mkdir()
    (tmp_path / "n09999999" / "a.jpg").write_bytes(b"")
    with pytest.raises(InputError, match=rf"none of the photos in {tmp_path} can be scored: their classes "
                                         r"\(n09999999\) name no class of the run's graph"):
        run_photos(Run(), tmp_path, progress=False)


def test_benchmark_photos_on_an_empty_class_folder_exits_1(tiny_run, tmp_path, capsys):
    from kgzsl.cli import main

    (tmp_path / "photos" / "n01440764").mkdir(parents=True)
    assert main(["-q", "benchmark", "photos", "--data", str(tmp_path / "photos"), "--run", str(tiny_run),
                 "--device", "cpu", "--out", str(tmp_path / "bench")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "nan" not in err
    root = tmp_path / "photos"
    assert err.strip().splitlines() == [f"kgzsl benchmark: error: no photos in {root}: expected {root}/<class>/*.jpg, "
                                        f"one sub-folder per class, named by a label as predict takes it (like "
                                        f"{root}/golden_retriever/) or by its WordNet id (like {root}/n02121620/)"]


def test_a_data_folder_without_photos_is_reported_before_the_run_is_loaded(tmp_path):
    from pathlib import Path

    from kgzsl.tasks.benchmarks.runner import run_benchmark

    (tmp_path / "data" / "n02121620").mkdir(parents=True)  # an empty class folder
    with pytest.raises(InputError, match="no photos in"):  # not "run folder ... not found"
        run_benchmark("photos", [], Path(tmp_path), tmp_path / "out", data_dir=tmp_path / "data",
                      run_dir=tmp_path / "no-such-run", progress=False)


def test_benchmark_photos_says_what_its_time_is(tmp_path, monkeypatch):
    """The report's last line names what took the time, not a bare "11.7s"."""
    import re

    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.tasks.benchmarks import photos
    from kgzsl.tasks.benchmarks.runner import run_benchmark

    result = {"rows": [{"method": "predict", "subset": "all", "top1": 0.5, "n": 2}], "added": [], "images": 2,
              "classes": 1, "skipped_classes": []}
    monkeypatch.setattr(photos, "photo_items", lambda data_dir: [])
    monkeypatch.setattr(photos, "run_photos", lambda clf, data_dir, progress, items: dict(result))
    monkeypatch.setattr(ZeroShotClassifier, "load", classmethod(lambda cls, run_dir, device: object()))
    report = run_benchmark("photos", [], tmp_path, tmp_path / "out", data_dir=tmp_path / "data",
                           run_dir=tmp_path / "run", progress=False, device="cpu")
    last = report.splitlines()[-1]
    assert not re.fullmatch(r"[0-9.]+s", last) and re.search(r"[0-9.]+s", last) and "photos" in last, last
    assert "calibrated" not in report
    result["score_calibration"] = "30 images in shop"
    report = run_benchmark("photos", [], tmp_path, tmp_path / "out", data_dir=tmp_path / "data",
                           run_dir=tmp_path / "run", progress=False, device="cpu")
    assert report.splitlines()[1] == ("the run is calibrated on 30 images in shop (kgzsl calibrate): these are "
                                      "predict's figures after it; photos that were among those images are not held out")


def test_a_folders_word_is_read_as_predict_reads_it_among_its_group(tiny_run, tmp_path):
    from kgzsl.vision.samples import demo_photos

    root = tmp_path / "fish"
    photos = sorted(demo_photos())[:3]
    for name, photo in zip(["bass", "tench", "goldfish"], photos):
        (root / name).mkdir(parents=True)
        shutil.copy(photo, root / name / photo.name)
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    clf.store_added_labels = False
    for sense in ("bass.n.07", "bass.n.08"):  # the instrument and the fish, both nodes
        clf.add_concept(sense)
    assert clf.resolve_labels(["bass"])[0].synset == "bass.n.07"  # alone: the instrument
    result = run_photos(clf, root, progress=False)
    resolved = {r["class"]: r for r in result["resolved"]}
    assert resolved["bass"]["synset"] == "bass.n.08"  # beside tench and goldfish: the fish, as predict reads it
    assert {c["class"]: c["synset"] for c in result["per_class"]}["bass"] == "bass.n.08"
