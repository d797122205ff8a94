"""Adding concepts to a trained run: graph extension, inductive rows, ambiguity, concept files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.graph.taxonomy import TaxonomyError
from kgzsl.inference.concepts import AmbiguousConceptError, ConceptError, load_concepts
from kgzsl.graph.ancestors import ancestor_pairs
from kgzsl.graph.graph_folder import GraphFormatError
from kgzsl.graph.knowledge_graph import KnowledgeGraph

from conftest import toy_graph

pytestmark = pytest.mark.slow


def _photo(name: str) -> Path:
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data" / name


@pytest.fixture
def clf(tiny_run):
    return ZeroShotClassifier.load(tiny_run, device="cpu")


def test_new_ancestors_of_a_leaf_on_the_toy_graph():
    g = toy_graph()
    parents = g.parents + [[3]]  # node 6 under dog
    assert sorted(ancestor_pairs(parents, range(6, 7))) == [(6, 0, 3), (6, 1, 2), (6, 3, 1)]


def test_extended_graph_knows_the_ancestors_a_full_search_finds():
    g = toy_graph()
    ext = g.extended(["x:a", "x:b"], ["a", "b"], [["a"], ["b"]], ["", ""], [(6, 3, 0), (7, 6, 0), (7, 5, 0)])
    assert (g.num_nodes, len(g.edges)) == (6, 5) and ext.path is None  # the original is unchanged
    full = KnowledgeGraph(wnids=ext.wnids, names=ext.names, lemmas=ext.lemmas, glosses=ext.glosses, edges=ext.edges)
    index, dist = ext.ancestor_index()
    want_index, want_dist = full.ancestor_index()
    assert sorted(zip(*index.tolist(), dist.tolist())) == sorted(zip(*want_index.tolist(), want_dist.tolist()))
    with pytest.raises(GraphFormatError, match="new parent"):
        g.extended(["x:c"], ["c"], [["c"]], [""], [(1, 6, 0)])  # above an existing node


def test_wordnet_concept_rows_equal_full_repropagation(clf):
    n = len(clf.wnids)
    res = clf.add_concept("Burmese cat")
    assert res.synset == "burmese_cat.n.01" and res.index == n  # house_cat is in the graph: one new node
    state = clf.concepts
    assert clf.rows.shape == (n + 1, 1281)
    assert torch.allclose(clf.rows.norm(dim=1), torch.ones(n + 1), atol=1e-4)
    with torch.no_grad():
        full = state.model.predict_rows(state.x, state.model.operators(state.graph))
    assert torch.allclose(full[n:], clf.rows[n:], atol=1e-5)
    assert "domestic_cat.n.01" in [state.graph.names[p] for p in state.graph.parents[n]]
    # an existing node is not added twice, and the classifier predicts with the concept at once
    assert clf.add_concept("burmese_cat.n.01").index == n and len(clf.wnids) == n + 1
    cat = clf.logits(clf.backbone(clf.backbone.transform(_load(_photo("chelsea.png")))[None]), ["Burmese cat"])
    coffee = clf.logits(clf.backbone(clf.backbone.transform(_load(_photo("coffee.png")))[None]), ["Burmese cat"])
    assert cat.item() > coffee.item()


def _load(path):
    from kgzsl.vision.images import load_image

    return load_image(path)


def test_hypernym_path_is_attached(clf):
    n = len(clf.wnids)
    res = clf.add_concept("okapi")
    added = clf.names[n:]
    assert res.synset == "okapi.n.01" and added[:2] == ["okapi.n.01", "giraffe.n.01"]
    graph = clf.concepts.graph
    # the path climbs until it meets the graph (mammals are there through the cats and dogs)
    assert all(graph.parents[i] for i in range(n, len(clf.wnids)))
    assert any(graph.parents[i][0] < n for i in range(n, len(clf.wnids)))
    assert clf.rows.shape[0] == len(clf.wnids) == len(graph.wnids)


def test_custom_concept_and_concept_file(clf, tmp_path):
    n = len(clf.wnids)
    res = clf.add_concept("e-scooter", parents=["car", "n02690373"], description="a standing scooter with "
                          "an electric motor")
    assert res.wnid == "x:e-scooter" and res.index == n
    graph = clf.concepts.graph
    assert sorted(graph.names[p] for p in graph.parents[n]) == ["airliner.n.01", "car.n.01"]
    preds = clf.predict(_photo("rocket.jpg"), ["e-scooter", "tabby"], top_k=2)
    assert {p["label"] for p in preds} == {"e-scooter", "tabby"}
    path = clf.save_concepts(tmp_path / "concepts.yaml")
    again = ZeroShotClassifier.load(clf.run_dir, device="cpu", backbone=clf.backbone)
    assert [r.wnid for r in load_concepts(again, path)] == ["x:e-scooter"]
    assert torch.allclose(again.rows[n], clf.rows[n], atol=1e-6)


def test_ambiguous_and_unknown_words_raise(clf):
    with pytest.raises(AmbiguousConceptError, match=r"crane\.n\.04.*sense=") as caught:
        clf.add_concept("crane")
    # the example sense is one a photo shows (the machine), not WordNet's first sense (the writer Hart Crane)
    assert str(caught.value).endswith("e.g. add_concept('crane', sense='crane.n.04')")
    assert clf.add_concept("crane", sense="crane.n.04").synset == "crane.n.04"
    # a sense of another word: "heron" stayed the bird and the call said it changed nothing
    with pytest.raises(ConceptError, match=r"dog\.n\.01 is not a sense of 'heron': its noun senses are .*heron\.n\.02"):
        clf.add_concept("heron", sense="dog.n.01")
    with pytest.raises(ConceptError, match="parents="):
        clf.add_concept("blorptastic gizmo")
    with pytest.raises(ConceptError, match="parent 'zzqx'"):
        clf.add_concept("blorptastic gizmo", parents=["zzqx"])



def test_one_concept_s_problems_name_it_in_python_and_on_the_command_line(tiny_run, tmp_path, capsys):
    import shutil

    from kgzsl.cli import main

    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    with pytest.raises(ConceptError) as info:
        clf.add_concept("teapot", aliases=["tea pot"])
    assert str(info.value).startswith("add_concept('teapot'): aliases= are for your own classes (with parents=)")
    with pytest.raises(ConceptError) as info:  # a list of one entry is one concept too (what the command adds)
        clf.add_concepts([{"name": "teapot", "parents": ["pot"], "sense": "teapot.n.01"}])
    assert info.value.cli_text() == ("add-concept 'teapot': give --sense (a WordNet noun as itself) or --parents "
                                     "(your own class), not both")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["-q", "add-concept", str(run), "teapot", "--aliases", "tea pot", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err == ("kgzsl add-concept: error: add-concept 'teapot': --aliases are for your own classes (with "
                   "--parents); a WordNet noun already answers to its lemma names\n")
    assert not (run / "concepts.yaml").exists()


def test_an_unknown_parent_gets_the_close_names_an_unknown_label_gets(clf, tmp_path):
    with pytest.raises(ConceptError, match=r"parent 'motor vehicel' is neither a node of the graph nor a WordNet "
                       r"noun; did you mean motor vehicle\? Else give a word"):
        clf.add_concept("e-scooter", parents=["motor vehicel"])
    with pytest.raises(ConceptError, match=r"neither a node of the graph nor a WordNet noun; give a word"):
        clf.add_concept("e-scooter", parents=["qqqzzx blorp"])  # nothing close: nothing suggested
    path = tmp_path / "t.yaml"  # another entry of the same file is a parent too, so it is suggested
    path.write_text("- name: e-scooter\n  parents: car\n- name: folding e-scooter\n  parents: e-scootr\n")
    with pytest.raises(TaxonomyError, match=r"t\.yaml:3: entry 'folding e-scooter': parent 'e-scootr' is neither a "
                       r"node of the graph nor a WordNet noun; did you mean e-scooter\?"):
        clf.add_concepts(path)
    assert clf.added_wnids == []

def test_cli_predict_with_a_concept_file(tiny_run, tmp_path, capsys):
    import json

    from kgzsl.cli import main

    concepts = tmp_path / "concepts.yaml"
    concepts.write_text("- name: e-scooter\n  parents: [car]\n  description: a standing scooter with an electric "
                        "motor\n- name: Burmese cat\n")
    assert main(["-q", "predict", str(tiny_run), str(_photo("chelsea.png")), "--labels", "e-scooter,Burmese cat",
                 "--concept-file", str(concepts), "--json", "--device", "cpu"]) == 0
    preds = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert {p["label"] for p in preds} == {"e-scooter", "Burmese cat"}
    assert main(["-q", "predict", str(tiny_run), str(_photo("chelsea.png")), "--labels", "crane",
                 "--concept-file", str(tmp_path / "missing.yaml"), "--device", "cpu"]) == 1


def test_a_damaged_model_file_is_the_error_a_label_added_on_first_use_raises(tiny_run, tmp_path):
    """It used to be hidden behind "'pagoda' is a WordNet noun but none of its senses is a node"."""
    import shutil

    from kgzsl.utils.io import TensorFileError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model = run / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated
    clf = ZeroShotClassifier.load(run, device="cpu")
    with pytest.raises(TensorFileError, match="model.safetensors"):
        clf.resolve_labels(["tabby", "pagoda"])
    assert [r.wnid for r in clf.resolve_labels(["tabby"])] == ["n02123045"]  # the nodes it has still answer


def test_adding_a_class_the_run_has_says_so_as_a_warning(clf, caplog):
    rows = clf.rows.clone()
    with caplog.at_level("WARNING", logger="kgzsl"):
        res = clf.add_concept("tabby")
    assert res.wnid == "n02123045" and clf.rows.equal(rows)
    assert "'tabby' is already a node of the run (tabby.n.01): nothing changed" in caplog.text
