"""Explanations: similar seen classes, WordNet paths, image evidence, PNG."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kgzsl.errors import InputError
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.tasks.explain import explain, explain_png, explanation_png, format_explanation

from conftest import requires_wordnet

pytestmark = pytest.mark.slow


def _chelsea() -> Path:
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data" / "chelsea.png"


@requires_wordnet
def test_explain_an_added_concept(tiny_run, tmp_path):
    from kgzsl.graph.wordnet import load_wordnet

    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    clf.add_concept("Burmese cat")
    result = explain(clf, _chelsea(), "Burmese cat", top_k=3)
    json.dumps(result)
    assert result["synset"] == "burmese_cat.n.01" and len(result["similar_seen"]) == 3
    assert result["similar_seen"][0]["similarity"] >= result["similar_seen"][1]["similarity"]
    assert result["image_evidence"][0]["synset"] in {"tabby.n.01", "tiger_cat.n.02", "egyptian_cat.n.01"}
    wn = load_wordnet()
    for s in result["similar_seen"]:
        path = s["path"]
        assert path[0] == s["synset"] and path[-1] == "burmese_cat.n.01" and s["lca"] in path
        for a, b in zip(path, path[1:]):  # every step is a WordNet hypernym link, one way or the other
            sa, sb = wn.synset(a), wn.synset(b)
            assert sb in sa.hypernyms() + sa.instance_hypernyms() or sa in sb.hypernyms() + sb.instance_hypernyms()
    assert "burmese_cat.n.01" in format_explanation(result)
    png = explain_png(result, tmp_path / "why.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in (0, -3, 1.5, True):  # checked as predict checks it, not torch's "selected index k out of range"
        with pytest.raises(InputError, match="top_k must be an integer >= 1"):
            explain(clf, _chelsea(), "Burmese cat", top_k=bad)
    many = explain(clf, _chelsea(), "Burmese cat", top_k=100_000)  # more than there are: all of them
    assert len(many["image_evidence"]) == 1000 and len(many["similar_seen"]) <= 1000


@requires_wordnet
def test_cli_explain(tiny_run, tmp_path, capsys):
    import shutil

    from kgzsl.cli import main

    tiny_run = shutil.copytree(tiny_run, tmp_path / "run")  # "Burmese cat" below is added to the run it explains
    png = tmp_path / "out.png"
    assert main(["-q", "explain", str(tiny_run), str(_chelsea()), "--label", "tabby", "--png", str(png),
                 "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["synset"] == "tabby.n.01" and result["png"] == str(png) and png.is_file()
    assert all(s["path"][-1] == "tabby.n.01" for s in result["similar_seen"])
    # a backbone class: predict scores it with its real row, and explain says so and uses that row
    assert result["row"] == "real"
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    import torch.nn.functional as F

    real = F.normalize(clf.backbone.classifier_rows().float(), dim=1)
    tabby = clf.backbone.wnids.index("n02123045")
    first = result["similar_seen"][0]
    assert first["similarity"] == pytest.approx(float(real[clf.backbone.wnids.index(first["wnid"])] @ real[tabby]),
                                                abs=1e-4)
    assert main(["-q", "explain", str(tiny_run), str(_chelsea()), "--label", "tabby", "--device", "cpu"]) == 0
    assert "one of the backbone's own classes, scored with its real row" in capsys.readouterr().out
    assert explain(clf, _chelsea(), "Burmese cat")["row"] == "predicted"


def _hand_made_result() -> dict:
    path = ["tabby.n.01", "domestic_cat.n.01", "burmese_cat.n.01"]
    return {"label": "Burmese cat", "synset": "burmese_cat.n.01", "wnid": "n02123242", "logit": 1.0,
            "similar_seen": [{"wnid": "n02123045", "synset": "tabby.n.01", "similarity": 0.5,
                              "lca": "domestic_cat.n.01", "path": path}], "image_evidence": []}


def test_explanation_png_bytes_equal_the_file_and_threads_draw_alike(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    result = _hand_made_result()
    data = explanation_png(result)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert explain_png(result, tmp_path / "why.png").read_bytes() == data
    with ThreadPoolExecutor(4) as pool:  # no shared pyplot state: concurrent drawings are the sequential one
        assert list(pool.map(lambda _: explanation_png(result), range(4))) == [data] * 4


def test_the_drawing_is_a_tree_from_the_label_down_with_no_two_nodes_in_one_place():
    import networkx as nx

    from kgzsl.tasks.explain import _tree_positions

    g = nx.Graph()  # label - mill - machine - {farm machine - {harvester, thresher}, device - tractor}; lone
    g.add_edges_from([("label", "mill"), ("mill", "machine"), ("machine", "farm"), ("farm", "harvester"),
                      ("farm", "thresher"), ("machine", "device"), ("device", "tractor")])
    g.add_node("lone")
    pos, width = _tree_positions(g, "label", ["harvester", "thresher", "tractor", "lone"])
    assert set(pos) == set(g.nodes) and width == 4  # leaves: tractor, harvester, thresher, then lone
    assert len(set(pos.values())) == len(pos)  # names sit beside their nodes: distinct places keep them apart
    assert pos["label"][1] == 0 and pos["mill"][1] == -1 and pos["harvester"][1] == -4 and pos["tractor"][1] == -4
    for parent, child in [("mill", "machine"), ("machine", "farm"), ("farm", "thresher"), ("device", "tractor")]:
        assert pos[child][1] == pos[parent][1] - 1  # one row per step of a path
    leaves = sorted(pos[n][0] for n in ("harvester", "thresher", "tractor", "lone"))
    assert leaves == [0, 1, 2, 3] and pos["lone"] == (3, -1)  # no path to the label: its own tree, one row down
    assert pos["tractor"][0] == 0 and pos["farm"][0] == 1.5  # children by name; a parent centred over them
