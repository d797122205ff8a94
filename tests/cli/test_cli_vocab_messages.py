"""What `kgzsl add-concept`, `calibrate` and `explain` say, and that they check their options before writing."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from kgzsl.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


def _chelsea() -> Path:
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data" / "chelsea.png"


def _photo_folders(root: Path, per_class: int) -> None:
    """``root/cal/<wnid>/i.png`` (two in-set classes) and the same photos flat in ``root/flat``."""
    from PIL import Image

    photo = Image.open(_chelsea()).convert("RGB")
    (root / "flat").mkdir()
    for wnid in ("n02123045", "n01440764"):
        (root / "cal" / wnid).mkdir(parents=True)
        for i in range(per_class):
            image = photo.rotate(10 * i).resize((96, 64))
            image.save(root / "cal" / wnid / f"{i}.png")
            image.save(root / "flat" / f"{wnid}-{i}.png")


def test_add_concept_in_a_read_only_run_is_one_line_and_adds_nothing(run, capsys, monkeypatch):
    import filelock

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(run / ".concepts.lock"))

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    assert main(["-q", "add-concept", str(run), "fluffcat", "--parents", "tabby", "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # not "added" before the store failed
    assert captured.err == (f"kgzsl add-concept: error: cannot write {run / '.concepts.lock'}: Read-only file "
                            "system; choose a folder you can write to\n")
    assert not (run / "concepts.yaml").exists()


def test_add_concept_with_empty_parents_says_so(run, capsys):
    assert main(["-q", "add-concept", str(run), "thing2", "--parents", "", "--device", "cpu"]) == 1
    assert capsys.readouterr().err == ("kgzsl add-concept: error: --parents is empty: give one or more parent "
                                       "classes, e.g. --parents 'motor scooter'\n")
    assert main(["-q", "add-concept", str(run), "thing2", "--parents", " , ", "--device", "cpu"]) == 1
    assert "--parents is empty" in capsys.readouterr().err


def test_add_concept_names_the_id_once_and_says_other_parents_are_not_used(run, capsys, caplog):
    assert main(["-q", "add-concept", str(run), "e-scooter", "--parents", "car", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("added 'e-scooter' as x:e-scooter\n")
    assert main(["-q", "add-concept", str(run), "e-scooter", "--parents", "airliner", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out == "'e-scooter' is already a node of the run (x:e-scooter): nothing changed for it\n"
    assert "under car: the parents given (airliner) differ and are not used; to change them, remove its entry " \
           f"from {run / 'concepts.yaml'} and add it again" in caplog.text  # a warning, shown by the command


def test_a_file_of_classes_the_run_has_already_writes_nothing(run, tmp_path, capsys):
    (tmp_path / "have.yaml").write_text("- tabby\n- goldfish\n", encoding="utf-8")
    assert main(["-q", "add-concept", str(run), "--file", str(tmp_path / "have.yaml"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "'tabby' is already a node of the run" in out and "stored in" not in out
    assert not (run / "concepts.yaml").exists() and not (run / "concepts.safetensors").exists()


def test_add_concept_reads_a_word_as_predict_does(run, capsys):
    assert main(["-q", "add-concept", str(run), "dog", "--sense", "dog.n.03", "--device", "cpu"]) == 0
    capsys.readouterr()  # two senses of "dog" are nodes now; `predict --labels dog` means dog.n.01
    assert main(["-q", "add-concept", str(run), "dog", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == ("'dog' is already a node of the run (dog.n.01): nothing changed; to add "
                                       "another sense, pass --sense\n")
    assert main(["-q", "add-concept", str(run), "crane", "--device", "cpu"]) == 1  # no sense is a node
    err = capsys.readouterr().err
    assert "'crane' is ambiguous" in err and "Pick one with --sense (in a --file: 'sense:')" in err
    assert "--concept-file" not in err


def test_calibrate_checks_keep_before_writing(run, tmp_path, capsys):
    _photo_folders(tmp_path, per_class=2)
    for images in ("cal", "flat"):
        for keep in ("1.5", "0", "nan"):
            assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / images), "--keep", keep,
                         "--device", "cpu"]) == 1
            assert capsys.readouterr().err == f"kgzsl calibrate: error: --keep must be in (0, 1], got {float(keep)}\n"
    assert not (run / "score_calibration.safetensors").exists() and not (run / "abstain.json").exists()


def test_calibrating_again_without_in_set_classes_removes_the_stale_abstain_threshold(run, tmp_path, capsys, caplog):
    import json

    _photo_folders(tmp_path, per_class=3)
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "cal"), "--keep", "0.5",
                 "--device", "cpu"]) == 0
    assert json.loads((run / "abstain.json").read_text())["inputs"] == 6
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "cal"), "--device", "cpu"]) == 0
    assert "removed" not in caplog.text and (run / "abstain.json").is_file()  # a new one replaced it: no warning
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "flat"), "--device", "cpu"]) == 0
    assert not (run / "abstain.json").exists() and f"removed {run / 'abstain.json'}" in caplog.text
    assert "sub-folder per in-set class named by a label or a wnid" in caplog.text
    cat = str(_chelsea())
    assert main(["-q", "predict", str(run), cat, "--labels", "tabby,tench", "--abstain", "--device", "cpu"]) == 1
    assert "--abstain needs a calibrated threshold" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["out.jpg", "out.png.txt", "out"])
def test_explain_refuses_a_png_path_that_is_no_png_before_computing(run, tmp_path, capsys, monkeypatch, name):
    import kgzsl.tasks.explain as explain_module

    monkeypatch.setattr(explain_module, "explain", lambda *a, **k: pytest.fail("computed before the check"))
    assert main(["-q", "explain", str(run), str(_chelsea()), "--label", "tabby", "--png", str(tmp_path / name),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kgzsl explain: error: --png {tmp_path / name}: the drawing is PNG data; give a file "
                          "name ending in .png") and err.count("\n") == 1
    assert not (tmp_path / name).exists()


def test_explain_png_takes_any_case_of_png(run, tmp_path, capsys):
    assert main(["-q", "explain", str(run), str(_chelsea()), "--label", "tabby", "--png", str(tmp_path / "w.PNG"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "w.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibrate_checks_its_labels_before_replacing_the_runs_calibration(run, tmp_path, capsys):
    _photo_folders(tmp_path, per_class=3)
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "cal"), "--keep", "0.5",
                 "--device", "cpu"]) == 0
    before = {name: (run / name).read_bytes() for name in ("score_calibration.safetensors", "abstain.json")}
    capsys.readouterr()
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "flat"), "--labels", "tabby,zzzq",
                 "--device", "cpu"]) == 1
    assert "unknown label 'zzzq'" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in before} == before  # neither replaced nor removed
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "flat"), "--labels", "tabby, ,tench",
                 "--device", "cpu"]) == 1
    assert "empty label (label 2 of 3: two commas in a row" in capsys.readouterr().err
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "flat"), "--labels", " ",
                 "--device", "cpu"]) == 1
    assert "--labels is empty" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in before} == before


def test_calibrate_on_unlabelled_images_says_no_threshold_was_set_and_a_file_is_no_folder(run, tmp_path, capsys):
    _photo_folders(tmp_path, per_class=3)
    (tmp_path / "flat" / "broken.png").write_bytes(b"not an image")
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "flat"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "6 images in flat (1 unreadable, skipped)" in out and "no 'none of these' threshold set" in out
    photo = next((tmp_path / "flat").glob("*.png"))
    assert main(["-q", "calibrate", str(run), "--images", str(photo), "--device", "cpu"]) == 1
    assert f"{photo} is a file, not a folder of images" in capsys.readouterr().err


def test_calibrate_says_what_it_adds_and_replaces(run, tmp_path, capsys):
    import shutil

    _photo_folders(tmp_path, per_class=3)
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "flat"), "--device", "cpu"]) == 0
    assert "replaces" not in capsys.readouterr().out  # nothing to replace yet
    shutil.copytree(tmp_path / "cal" / "n01440764", tmp_path / "cal" / "n02391049")  # zebra: not a node
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "cal"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "added 1 of the classes to the run as concepts (WordNet nouns that were not graph nodes, with 3 " \
           "missing ancestors): zebra.n.01" in out
    assert "it replaces the run's earlier calibration (6 images in flat)" in out


def test_calibrate_takes_class_folders_named_by_labels_as_the_in_set_classes(run, tmp_path, capsys):
    """As benchmark photos does: sub-folders named by labels set the threshold; sub-folders of other names
    (dates, "misc") are unlabelled images, and the note says why no threshold was set."""
    import json

    _photo_folders(tmp_path, per_class=3)
    named = tmp_path / "named"
    named.mkdir()
    (tmp_path / "cal" / "n02123045").rename(named / "tabby")
    (tmp_path / "cal" / "n01440764").rename(named / "tench")
    assert main(["-q", "calibrate", str(run), "--images", str(named), "--keep", "0.5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"in-set classes: the 2 sub-folders of {named} (tabby, tench)" in out and "abstain threshold" in out
    assert json.loads((run / "abstain.json").read_text())["candidates"] == ["tabby", "tench"]
    (named / "tabby").rename(named / "2023")
    assert main(["-q", "calibrate", str(run), "--images", str(named), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"no 'none of these' threshold set (predict --abstain): the sub-folders of {named} are not all labels " \
           "(unknown label '2023'" in out and out.rstrip().endswith("; rename or move those that are not, or give --labels "
                                                                 "naming the classes all its images show")
    assert not (run / "abstain.json").exists()


def test_explain_adds_a_wordnet_noun_as_predict_does(run, capsys):
    assert main(["-q", "explain", str(run), str(_chelsea()), "--label", "Burmese cat", "--json",
                 "--device", "cpu"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["synset"] == "burmese_cat.n.01"
    assert "name: Burmese cat" in (run / "concepts.yaml").read_text()  # stored with the run, like predict's


def test_a_closed_pipe_ends_the_command_quietly(run, monkeypatch):
    import importlib

    cli_main = importlib.import_module("kgzsl.cli.main")  # the module, not the function kgzsl.cli exports
    read, write = os.pipe()
    os.close(read)  # the reader has gone (`kgzsl ... | head -1` after its line)
    stream = os.fdopen(write, "w")
    monkeypatch.setattr("sys.stdout", stream)
    monkeypatch.setattr(cli_main, "_cmd_evaluate", lambda args: print("x" * 100_000) or 0)
    try:
        assert main(["-q", "evaluate", str(run), "--data", str(run), "--split", "2-hops"]) == 141
    finally:
        stream.close()


def test_calibrate_abstain_only_sets_the_threshold_and_leaves_the_scores(run, tmp_path, capsys):
    import json

    _photo_folders(tmp_path, per_class=3)
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "cal"), "--keep", "0.5", "--abstain-only",
                 "--device", "cpu"]) == 0
    assert "over the scores as they are" in capsys.readouterr().out
    assert not (run / "score_calibration.safetensors").exists()
    assert json.loads((run / "abstain.json").read_text())["score_calibration"] is None
    cat = str(_chelsea())
    assert main(["-q", "predict", str(run), cat, "--labels", "tabby,tench", "--abstain", "--device", "cpu"]) == 0
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "flat"), "--abstain-only",
                 "--device", "cpu"]) == 1  # unlabelled images: no threshold to set, and nothing else is done
    assert "--abstain-only sets the 'none of these' threshold alone" in capsys.readouterr().err
    assert not (run / "score_calibration.safetensors").exists()


def test_calibrate_with_a_misspelt_class_folder_is_an_error_and_writes_nothing(run, tmp_path, capsys):
    from PIL import Image

    photo = Image.open(_chelsea()).convert("RGB").resize((96, 64))
    for name in ("tabby", "tench", "goldfsh"):
        (tmp_path / "lab" / name).mkdir(parents=True)
        for i in range(2):
            photo.rotate(10 * i).save(tmp_path / "lab" / name / f"{i}.png")
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "lab"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "1 of the 3 class folders" in err and "come close to one ('goldfsh'" in err and "did you mean" in err
    assert not (run / "score_calibration.safetensors").exists() and not (run / "abstain.json").exists()


def test_calibrate_on_class_folders_says_what_it_does_to_their_top1(run, tmp_path, capsys, caplog, monkeypatch):
    import re

    _photo_folders(tmp_path, per_class=3)
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "cal"), "--keep", "0.5",
                 "--device", "cpu"]) == 0
    found = re.search(r"top-1 among the 2 classes on their 6 images: (\d\.\d{3}) before this calibration, "
                      r"(\d\.\d{3}) after", capsys.readouterr().out)
    assert found and all(0 <= float(v) <= 1 for v in found.groups())
    import kgzsl.tasks.calibrate as calibrate_module

    figures = iter([0.5, 0.25])  # before, after: the calibration costs accuracy here
    monkeypatch.setattr(calibrate_module, "top1_among", lambda *args: next(figures))
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "cal"), "--keep", "0.5",
                 "--device", "cpu"]) == 0
    assert "0.500 before this calibration, 0.250 after" in capsys.readouterr().out
    assert "this score calibration lowers top-1 on your labelled images (0.500 to 0.250)" in caplog.text
    assert "--abstain-only" in caplog.text
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "flat"), "--labels", "tabby,tench",
                 "--device", "cpu"]) == 0  # a flat folder: no image's class is known, no figure
    assert "top-1 among" not in capsys.readouterr().out
