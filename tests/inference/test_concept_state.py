"""The state concepts are added with: the run's graph, node features and model, from the run folder alone."""

from __future__ import annotations

import shutil

import pytest
import torch

from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.concept_nodes import ConceptError
from kgzsl.inference.concept_state import concept_graph, load_propagation_model, run_text_spec
from kgzsl.utils.io import load_tensors, save_tensors

pytestmark = pytest.mark.slow


def test_the_text_spec_comes_from_the_runs_config():
    assert run_text_spec({"config": {"features": {"encoder": "wordllama", "gloss": True}}}) == ("wordllama", True)
    assert run_text_spec({}) == ("minilm", False)  # runs that record nothing: the defaults of their time


def test_loaded_once_from_a_run_copied_elsewhere(tiny_run, tmp_path):
    copy = tmp_path / "copied_run"
    shutil.copytree(tiny_run, copy)
    clf = ZeroShotClassifier.load(copy, device="cpu")
    assert clf.concepts is None
    state = concept_graph(clf)
    assert concept_graph(clf) is state and clf.concepts is state  # kept by the classifier
    assert state.graph.wnids == clf.wnids and state.x.size(0) == len(clf.wnids)
    assert not state.model.training
    with torch.inference_mode():  # the rebuilt model gives the run's own rows
        rows = state.model.predict_rows(state.x, state.model.operators(state.graph), rows=torch.arange(10))
    torch.testing.assert_close(rows.float(), clf.rows[:10].float(), atol=1e-4, rtol=1e-4)


def test_a_model_file_without_its_recipe_and_a_classifier_without_a_run_are_refused(tiny_run, tmp_path):
    bare = tmp_path / "model.safetensors"
    save_tensors(bare, load_tensors(tiny_run / "model.safetensors"))  # the weights, no name or hyper-parameters
    with pytest.raises(ConceptError, match="does not record its model name"):
        load_propagation_model(tmp_path)
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    loose = ZeroShotClassifier(clf.backbone, clf.rows, clf.wnids, clf.names, clf.lemmas, clf.row_scale)
    with pytest.raises(ConceptError, match="loaded from a run folder"):
        concept_graph(loose)


def test_threads_loading_the_state_and_adding_labels_at_once_share_one_state(tiny_run, tmp_path):
    """``/explain`` loads the concept state on first use while ``/predict`` may add a missing label:
    both must end up with one state, whose graph holds every node the classifier has."""
    from concurrent.futures import ThreadPoolExecutor

    for trial in range(3):
        run = tmp_path / f"run{trial}"
        shutil.copytree(tiny_run, run)
        clf = ZeroShotClassifier.load(run, device="cpu")
        feats = torch.zeros(1, clf.backbone.feature_dim)
        jobs = [lambda: concept_graph(clf), lambda: clf.logits(feats, ["moon", "cat"]),
                lambda: concept_graph(clf), lambda: clf.logits(feats, ["pagoda", "cat"])]
        with ThreadPoolExecutor(len(jobs)) as pool:
            done = [pool.submit(job) for job in jobs]
            states = [f.result() for f in done[0::2]]
        assert states[0] is states[1] is clf.concepts
        assert clf.concepts.graph.wnids == clf.wnids and clf.concepts.x.size(0) == len(clf.wnids)
        assert {"n09358358", "n03874965"} <= set(clf.added_wnids)  # moon.n.01, pagoda.n.01
