"""Concepts given again: a word resolves as predict resolves it, other parents are said, a read-only run is said."""

from __future__ import annotations

import errno
import shutil

import pytest
import torch

from kgzsl.errors import OutputError
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.concept_nodes import AmbiguousConceptError, pick_synset
from kgzsl.inference.concept_store import store_concepts
from kgzsl.inference.labels import LabelError

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


def test_a_word_that_resolves_to_a_node_is_that_node_though_more_senses_are_nodes(run):
    from kgzsl.graph.wordnet import load_wordnet

    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concept("dog", sense="dog.n.03")  # a second sense of "dog" becomes a node
    with pytest.raises(AmbiguousConceptError):  # WordNet alone cannot choose between the two
        pick_synset(load_wordnet(), "dog", None, set(clf.resolver.index))
    rows = clf.rows.clone()
    report = clf.add_concepts(["dog"])
    assert report.added == [] and [r.synset for r in report.existing] == ["dog.n.01"]  # as predict resolves it
    assert report.other_senses == ["dog"] and clf.rows.equal(rows)
    report = clf.add_concepts(["okapi"])  # one sense: nothing to say about others
    assert report.added and report.other_senses == []
    assert clf.add_concepts(["okapi"]).other_senses == []


def test_a_class_given_again_under_other_parents_says_so_and_how_to_change_them(run, caplog):
    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concept("e-scooter", parents=["car"])
    store_concepts(clf)
    caplog.clear()
    same = clf.add_concepts([{"name": "e-scooter", "parents": ["car.n.01"]}])  # the same node, written otherwise
    assert same.warnings == [] and "differ" not in caplog.text
    other = clf.add_concepts([{"name": "e-scooter", "parents": ["airliner"]}])
    assert [r.wnid for r in other.existing] == ["x:e-scooter"] and other.added == []
    line = f"'e-scooter' is already a node of the run (x:e-scooter) under car: the parents given (airliner) " \
           f"differ and are not used; to change them, remove its entry from {run / 'concepts.yaml'} and add it again"
    assert other.warnings == [line] and line in caplog.text
    # spelt otherwise, the same node: "E Scooter" is x:e-scooter too, stored in the run, not trained with it
    spelt = clf.add_concepts([{"name": "E Scooter", "parents": ["airliner"]}])
    assert spelt.warnings and "remove its entry from" in spelt.warnings[0] and "retrain" not in spelt.warnings[0]
    # what the warning says works: the entry removed, the run loaded again, the class added under airliner
    (run / "concepts.yaml").write_text("[]\n")
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert again.added_wnids == []
    assert again.add_concept("e-scooter", parents=["airliner"]).wnid == "x:e-scooter"
    store_concepts(again)
    graph = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    from kgzsl.inference.concept_state import concept_graph

    state = concept_graph(graph)
    node = state.graph.index["x:e-scooter"]
    assert [state.graph.names[p] for c, p, _ in state.graph.edges if c == node] == ["airliner.n.01"]



def test_new_aliases_for_a_class_of_the_run_are_said_not_added_as_other_parents_are(run, caplog):
    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concept("fluffcat", parents=["tabby"], aliases=["fluffy cat"])
    store_concepts(clf)
    caplog.clear()
    same = clf.add_concepts([{"name": "fluffcat", "parents": "tabby", "aliases": ["Fluffy  Cat"]}, "okapi"])
    assert same.warnings == [] and "not added" not in caplog.text  # the aliases it has, written otherwise
    rows = clf.rows.clone()
    other = clf.add_concepts([{"name": "fluffcat", "parents": ["tabby"], "aliases": ["fluffy cat", "puffcat"]}])
    line = (f"'fluffcat' is already a node of the run (x:fluffcat) with the aliases fluffy cat: the new aliases "
            f"given (puffcat) are not added, as they are part of the text its row is computed from; to add them, "
            f"remove its entry from {run / 'concepts.yaml'} and add it again")
    assert other.warnings == [line] and line in caplog.text
    assert [r.wnid for r in other.existing] == ["x:fluffcat"] and other.added == []
    assert torch.equal(clf.rows, rows) and clf.concepts.added[0]["aliases"] == ["fluffy cat"]
    with pytest.raises(LabelError, match="unknown label 'puffcat'"):
        clf.resolver.resolve("puffcat")
    # what the warning says works: the entry removed, the run loaded again, the class added with both aliases
    (run / "concepts.yaml").write_text("[]\n")
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    again.add_concept("fluffcat", parents=["tabby"], aliases=["fluffy cat", "puffcat"])
    assert again.resolver.resolve("puffcat").wnid == "x:fluffcat" == again.resolver.resolve("fluffy cat").wnid

def test_storing_in_a_read_only_run_is_a_clear_output_error(run, monkeypatch):
    import filelock

    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concept("fluffcat", parents=["tabby"])

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(run / ".concepts.lock"))

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    with pytest.raises(OutputError, match=r"^cannot write .*\.concepts\.lock: Read-only file system; choose a "
                       r"folder you can write to$"):
        store_concepts(clf)
    monkeypatch.undo()
    (run / ".concepts.lock").mkdir()  # the lock path taken by a folder: the same kind of error
    with pytest.raises(OutputError, match="cannot write .*: Is a directory; choose a folder you can write to"):
        store_concepts(clf)
    assert not (run / "concepts.yaml").exists() and not (run / "concepts.safetensors").exists()
