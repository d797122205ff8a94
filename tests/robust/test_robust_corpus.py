"""The bad-file corpus (tests/data/bad/, see badfiles.py) through every image consumer.

``bad_*`` inputs must each get a per-image error that names the file and says what to do, ``ok_*``
ones (grayscale, RGBA, CMYK, 16-bit, palette, float, EXIF-rotated, animated, 1x1, odd names...) must
be classified, and the batch must never stop: ``load_image``, ``ZeroShotClassifier.predict_detailed``,
``kgzsl predict --json`` (in-process and as a real subprocess) and ``kgzsl evaluate``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kgzsl.cli import main
from kgzsl.cli._common import format_table
from kgzsl.vision.images import ImageLoadError, load_image

from badfiles import CORPUS, corpus, corpus_bytes, expected_ok
from robust_helpers import torch_threads

LABELS = ["tabby", "tench", "airliner", "golden retriever"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    return corpus(tmp_path_factory.mktemp("corpus"))


def _check_records(records: list[dict], files: list[Path], top_k: int) -> None:
    assert [r["image"] for r in records] == [str(p) for p in files]
    for rec, path in zip(records, files):
        if expected_ok(path):
            assert "error" not in rec, rec
            assert len(rec["predictions"]) == top_k and rec["predictions"][0]["label"] in LABELS
        else:
            assert "predictions" not in rec, rec
            assert rec["error"].startswith(f"cannot load image {path}: "), rec["error"]
            assert "; " in rec["error"]  # problem; fix


def test_committed_corpus_is_complete_and_small():
    names = set(corpus_bytes())
    assert {p.name for p in CORPUS.iterdir() if p.name != "README.md"} == names
    assert sum(p.stat().st_size for p in CORPUS.iterdir()) < 50_000
    assert sum(n.startswith("bad_") for n in names) >= 10 and sum(n.startswith("ok_") for n in names) >= 15


def test_load_image_on_the_corpus(files):
    for path in files:
        if expected_ok(path):
            im = load_image(path)
            assert im.mode == "RGB" and min(im.size) >= 1
        else:
            with pytest.raises(ImageLoadError) as err:
                load_image(path)
            assert err.value.source == str(path) and str(path) in str(err.value)


@pytest.mark.slow
def test_predict_detailed_on_the_corpus(tiny_run, files):
    from kgzsl.inference.classifier import ZeroShotClassifier

    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    with torch_threads(1):
        records = clf.predict_detailed(files, LABELS, top_k=2, batch_size=7)
    _check_records(records, files, top_k=2)
    table = format_table(records)
    table.encode("utf-8")  # file names that are not UTF-8 are escaped, so printing cannot fail
    assert "\\udcff" in table or not any("\udcff" in str(p) for p in files)
    # a lower pixel limit is honoured per classifier
    clf.max_pixels = 500
    small = clf.predict_detailed([CORPUS / "ok_rgb.jpg"], LABELS, top_k=1)[0]
    assert "exceeds max_pixels=500" in small["error"]


@pytest.mark.slow
def test_kgzsl_predict_json_on_the_corpus(tiny_run, files, capsys):
    with torch_threads(1):
        code = main(["-q", "predict", str(tiny_run), *map(str, files), "--labels", ",".join(LABELS), "--top-k",
                     "3", "--json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 1  # some images failed; all were reported
    _check_records(json.loads(out), files, top_k=3)
    n_bad = sum(not expected_ok(p) for p in files)
    assert f"{n_bad} of {len(files)} images failed" in err


@pytest.mark.slow
def test_kgzsl_predict_subprocess_prints_the_table(tiny_run, files):
    """A real process with a real stdout: undecodable file names must not crash the table output."""
    # strict UTF-8 stdout, as under most desktop locales: a surrogate-escaped file name would raise there
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8:strict"}
    out = subprocess.run([sys.executable, "-m", "kgzsl", "-q", "predict", str(tiny_run), *map(str, files),
                          "--labels", ",".join(LABELS), "--top-k", "1", "--device", "cpu"],
                         capture_output=True, timeout=300, env=env)
    stdout, stderr = out.stdout.decode("utf-8"), out.stderr.decode("utf-8", "replace")
    assert out.returncode == 1 and "Traceback" not in stderr, stderr
    assert stdout.count("ERROR: cannot load image") == sum(not expected_ok(p) for p in files)
    assert stdout.count("%  ") == sum(expected_ok(p) for p in files)


@pytest.mark.slow
def test_kgzsl_evaluate_skips_bad_images(tiny_run, files, tmp_path, monkeypatch, capsys):
    """An ImageFolder with the corpus spread over two classes: only the readable images are scored."""
    data = tmp_path / "data"
    classes = ["n02123045", "n02084071"]  # tabby (seen) and dog (unseen), both nodes of the tiny graph
    placed_ok = 0
    for i, path in enumerate(files):
        if not path.exists() or path.is_dir():
            continue  # a missing path or a directory cannot be placed; the folder gets its own below
        target = data / classes[i % 2] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        placed_ok += expected_ok(path) and Path(path.name).suffix.lower() in {
            ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
    (data / classes[0] / "a_directory.png").mkdir()
    split = tmp_path / "split.txt"
    split.write_text("\n".join(classes) + "\n")
    monkeypatch.setenv("KGZSL_CACHE", str(tmp_path / "cache"))
    with torch_threads(1):
        code = main(["-q", "evaluate", str(tiny_run), "--data", str(data), "--split", str(split), "--json",
                     "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert result["n_images"] == placed_ok and result["n_classes"] == 2
