"""``evaluate`` measures its mistakes on the run's own graph (and the concepts added to it), wherever the run lies."""

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.tasks.evaluate import evaluate_run

pytestmark = pytest.mark.slow

BURMESE = "n02123917"  # burmese_cat.n.01: not a node of the tiny graph, added to the run as a concept
CLASSES = ["n02121620", "n02084071", "n02958343", BURMESE]  # cat, dog, car (graph nodes), Burmese cat
NOT_NODES = [f"n0999999{i}" for i in range(7)]


def _images(root: Path) -> tuple[Path, Path]:
    """The same two photos under every class, so that at least three classes of four are mistaken."""
    import skimage

    data = Path(os.path.dirname(skimage.__file__)) / "data"
    for wnid in CLASSES:
        (root / wnid).mkdir(parents=True)
        for name in ("chelsea.png", "coffee.png"):
            Image.open(data / name).convert("RGB").resize((64, 64)).save(root / wnid / f"{name}.jpg")
    split = root.parent / "split.txt"
    split.write_text("\n".join(CLASSES + NOT_NODES) + "\n")
    return root, split


def _moved_run(tiny_run: Path, dest: Path, *, ignore: tuple[str, ...] = ()) -> Path:
    """A copy of the run whose run.json records a graph folder that does not exist."""
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("finetune", *ignore))
    summary = json.loads((dest / "run.json").read_text())
    summary["graph"] = str(dest.parent / "no-such-graph")
    (dest / "run.json").write_text(json.dumps(summary))
    return dest


def test_a_copied_run_with_a_concept_measures_mistakes_on_its_own_graph(tiny_run, tmp_path, caplog):
    from kgzsl.inference.concept_store import store_concepts

    run = _moved_run(tiny_run, tmp_path / "run")
    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concept("Burmese cat")
    store_concepts(clf)  # as `kgzsl add-concept` does: the concept travels with the run
    root, split = _images(tmp_path / "images")
    with caplog.at_level(logging.INFO, logger="kgzsl"):
        result = evaluate_run(run, root, split=split, device="cpu", progress=False, cache_dir=tmp_path / "cache")
    assert result["n_classes"] == 4 and result["hit"]["1"] < 1.0
    assert result["mistake_severity"] is not None and result["mistake_severity"] >= 0
    assert "mistake severity skipped" not in caplog.text
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 1 and left_out[0].startswith("7 of the 11 classes")
    assert left_out[0].endswith(": " + ", ".join(NOT_NODES[:5]) + " and 2 more")
    # one line says where the features are cached, not one per class
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("cached" in m for m in info) == 1 and any(str(tmp_path / "cache") in m for m in info)
    assert not any(m.startswith("features of") for m in info)


def test_a_run_without_its_graph_copy_says_why_severity_is_skipped(tiny_run, tmp_path, caplog):
    run = _moved_run(tiny_run, tmp_path / "run", ignore=("edges.tsv",))
    root, split = _images(tmp_path / "images")
    split.write_text("\n".join(CLASSES[:3]) + "\n")
    with caplog.at_level(logging.WARNING, logger="kgzsl"):
        result = evaluate_run(run, root, split=split, device="cpu", progress=False, cache_dir=tmp_path / "cache")
    assert result["mistake_severity"] is None and result["hit"]["1"] < 1.0
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mistake severity skipped")]
    assert len(skipped) == 1 and "edges.tsv missing" in skipped[0] and "no-such-graph" not in skipped[0]
