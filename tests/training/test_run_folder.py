"""A run folder is self-contained: copied elsewhere, graph folder deleted, it still predicts, explains,
adds concepts and calibrates; a missing graph is an error naming the build command, never a silent build."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from kgzsl.graph import GraphNotFoundError, KnowledgeGraph
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.concepts import ConceptError
from kgzsl.tasks.explain import explain
from kgzsl.training.config import load_config
from kgzsl.training.run import GRAPH_FILES, NODE_FEATURES_FILE, train_run
from kgzsl.utils.io import load_tensors
from kgzsl.utils.paths import shipped_dir

pytestmark = pytest.mark.slow

LABELS = ["tabby", "tench", "airliner", "Burmese cat"]


def _photos() -> list[Path]:
    import skimage

    data = Path(os.path.dirname(skimage.__file__)) / "data"
    return [data / n for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]


def _use(clf: ZeroShotClassifier) -> dict:
    """Everything a run is used for that needs more than its rows: predictions, concepts, explanations."""
    clf.add_concept("Burmese cat")
    clf.add_concept("fluffcat", parents=["tabby"], description="a very fluffy house cat")
    why = explain(clf, _photos()[0], "Burmese cat", top_k=3)
    return {"predictions": clf.predict(_photos(), LABELS + ["fluffcat"], top_k=3),
            "rows": clf.rows[-2:].clone(), "similar": [s["synset"] for s in why["similar_seen"]]}


def test_config_names_and_paths_give_the_same_config():
    named = load_config("dgp")
    assert named == load_config(shipped_dir("configs") / "dgp.yaml") == load_config("dgp.yaml")
    assert named.name == "dgp" and named.graph.path == "imagenet1k_21k"


def test_training_on_a_missing_graph_names_the_build_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KGZSL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KGZSL_GRAPH_DATA", raising=False)
    config = load_config("dgp", ["graph.path=g_small", "graph.wnids=imagenet1k"])
    with pytest.raises(GraphNotFoundError, match="kgzsl build-graph --wnids imagenet1k --out g_small$"):
        train_run(config, out_dir=tmp_path / "run", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no graph built, no run folder started


@pytest.fixture(scope="module")
def moved(tiny_run, tmp_path_factory) -> dict:
    """A short DGP run trained on its own graph folder, used in place, then moved with the graph deleted."""
    root = tmp_path_factory.mktemp("portable")
    shutil.copytree(tiny_run.parent / "graph", root / "graph", ignore=shutil.ignore_patterns("features"))
    config = load_config(None, [f"graph.path={root / 'graph'}", f"graph.wnids={tiny_run.parent / 'tiny.txt'}",
                                "name=portable", "features.encoder=wordllama", "model.hidden_channels=[64]",
                                "train.epochs=5", "train.val_fraction=0.1", "train.device=cpu"])
    run = train_run(config, out_dir=root / "run", progress=False)
    in_place = _use(ZeroShotClassifier.load(run, device="cpu"))
    x_trained = load_tensors(root / "graph" / "features" / next(iter(os.listdir(root / "graph" / "features"))))
    shutil.rmtree(root / "graph")
    (root / "far" / "away").mkdir(parents=True)
    shutil.move(str(run), root / "far" / "away" / "run")
    return {"run": root / "far" / "away" / "run", "graph": root / "graph", "in_place": in_place,
            "x": x_trained["features"]}


def test_a_run_carries_its_graph_and_node_features(moved):
    run = moved["run"]
    assert all((run / name).is_file() for name in GRAPH_FILES)
    summary = json.loads((run / "run.json").read_text())
    assert Path(summary["graph"]).is_absolute() and Path(summary["graph"]) == moved["graph"]
    assert not moved["graph"].exists()
    graph = KnowledgeGraph.load(run)
    assert graph.num_nodes == summary["num_nodes"] and graph.manifest["counts"]["nodes"] == graph.num_nodes
    assert torch.equal(load_tensors(run / NODE_FEATURES_FILE)["features"], moved["x"])


def test_a_moved_run_works_from_another_directory_without_its_graph(moved, tmp_path, monkeypatch):
    from kgzsl.tasks.abstain import calibrate_abstain

    monkeypatch.chdir(tmp_path)
    clf = ZeroShotClassifier.load(os.path.relpath(moved["run"]), device="cpu")
    used = _use(clf)
    assert torch.equal(used["rows"], moved["in_place"]["rows"]) and used["similar"] == moved["in_place"]["similar"]
    for got, want in zip(used["predictions"], moved["in_place"]["predictions"]):  # same rows; scores to float noise
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in want], abs=1e-5)
    assert clf.wnids[-1] == "x:fluffcat" and clf.resolver.resolve("fluffcat").wnid == "x:fluffcat"
    calibrate_abstain(clf, keep=0.75, images=_photos(), labels=LABELS)
    assert (moved["run"] / "abstain.json").is_file() and list(tmp_path.iterdir()) == []


def test_an_old_run_without_its_graph_copy(moved, tmp_path, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(moved["run"], old, ignore=shutil.ignore_patterns("edges.tsv", "ancestors.tsv", "manifest.json",
                                                                    NODE_FEATURES_FILE, "abstain.json"))
    monkeypatch.chdir(tmp_path)
    clf = ZeroShotClassifier.load(old, device="cpu")
    assert clf.predict(_photos()[:1], LABELS[:3], top_k=3) == \
        ZeroShotClassifier.load(moved["run"], device="cpu").predict(_photos()[:1], LABELS[:3], top_k=3)
    with pytest.raises(ConceptError, match=r"carries no copy of its graph .* the graph folder it records, "
                                           rf"{moved['graph']}, is missing; .*kgzsl build-graph --wnids \S+tiny.txt"):
        clf.add_concept("Burmese cat")
    # the recorded graph folder is used when it exists (features recomputed and cached there)
    KnowledgeGraph.load(moved["run"]).save(tmp_path / "rebuilt")
    summary = json.loads((old / "run.json").read_text())
    (old / "run.json").write_text(json.dumps(dict(summary, graph=str(tmp_path / "rebuilt"))))
    clf = ZeroShotClassifier.load(old, device="cpu")
    clf.add_concept("Burmese cat")
    clf.add_concept("fluffcat", parents=["tabby"], description="a very fluffy house cat")  # as _use adds them
    assert torch.allclose(clf.rows[-2:], moved["in_place"]["rows"], atol=1e-6)
    assert (tmp_path / "rebuilt" / "features").is_dir()


def test_training_again_into_a_run_folder_drops_its_stale_abstain_threshold(tiny_run, tmp_path, caplog):
    shutil.copytree(tiny_run.parent / "graph", tmp_path / "graph", ignore=shutil.ignore_patterns("features"))
    config = load_config(None, [f"graph.path={tmp_path / 'graph'}", f"graph.wnids={tiny_run.parent / 'tiny.txt'}",
                                "name=again", "features.encoder=wordllama", "model.hidden_channels=[16]",
                                "train.epochs=2", "train.val_fraction=0.1", "train.device=cpu"])
    run = train_run(config, out_dir=tmp_path / "run", progress=False)
    (run / "abstain.json").write_text(json.dumps({"threshold": 0.5}))  # set on this run's scores
    with caplog.at_level("WARNING", logger="kgzsl.training.run"):
        train_run(config, out_dir=run, progress=False)
    assert not (run / "abstain.json").exists() and (run / "run.json").is_file()
    assert f"replacing the run in {run}" in caplog.text and "abstain.json: its threshold was set on the replaced" \
        in caplog.text
