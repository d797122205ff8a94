"""Taxonomies added to a run: one batch equals one-by-one, stored rows load as they were, names come first."""

from __future__ import annotations

import shutil

import pytest
import torch

from kgzsl.errors import InputError, KgzslError
from kgzsl.graph.taxonomy import TaxonomyError
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.concept_nodes import ConceptError
from kgzsl.inference.concept_store import restore_concepts, store_concepts

pytestmark = pytest.mark.slow

TAXONOMY = """\
- name: e-scooter
  parents: [car, n02690373]
  description: a standing scooter with an electric motor
  aliases: [electric scooter]
- name: folding e-scooter
  parents: electric scooter
- okapi
- name: fluffcat
  parents: tabby
  description: a very fluffy house cat
- Burmese cat
"""


@pytest.fixture
def run(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


def test_one_batch_equals_one_by_one(run, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(TAXONOMY)
    batch = ZeroShotClassifier.load(run, device="cpu")
    report = batch.add_concepts(path)
    assert [r.label for r in report.added] == ["e-scooter", "folding e-scooter", "okapi", "fluffcat", "Burmese cat"]
    single = ZeroShotClassifier.load(run, device="cpu", backbone=batch.backbone)
    single.add_concept("e-scooter", parents=["car", "n02690373"], description="a standing scooter with an electric "
                       "motor", aliases=["electric scooter"])
    single.add_concept("folding e-scooter", parents="electric scooter")
    single.add_concept("okapi")
    single.add_concept("fluffcat", parents=["tabby"], description="a very fluffy house cat")
    single.add_concept("Burmese cat")
    assert single.wnids == batch.wnids and len(batch.added_wnids) == report.new_nodes > 5  # okapi brings hypernyms
    assert (single.rows - batch.rows).abs().max() < 1e-5
    # every added row is a full re-propagation over the run's graph plus all added concepts
    state = batch.concepts
    with torch.no_grad():
        full = state.model.predict_rows(state.x, state.model.operators(state.graph))
    base = len(batch.wnids) - len(batch.added_wnids)
    assert torch.allclose(full[base:], batch.rows[base:], atol=1e-5)
    assert torch.equal(batch.rows[:base], ZeroShotClassifier.load(run, device="cpu", backbone=batch.backbone).rows)


def test_200_concepts_round_trip_through_the_run_folder(run):
    clf = ZeroShotClassifier.load(run, device="cpu")
    parents = ["tabby", "car", "airliner", "tench", "golden retriever"]
    entries = [{"name": f"product {i}", "parents": [parents[i % 5]] + ([f"product {i - 5}"] if i >= 5 else []),
                "description": f"catalogue item number {i}"} for i in range(200)]
    assert len(clf.add_concepts(entries).added) == 200
    store_concepts(clf)
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert again.wnids == clf.wnids and torch.equal(again.rows, clf.rows)
    assert again.concepts.graph is None  # rows read as stored: nothing loaded or propagated
    assert again.resolver.resolve("Product 7").wnid == "x:product-7"
    # adding one more after loading joins the stored nodes to the graph and gives what one session gives
    clf.add_concept("product 200", parents=["product 195"])
    again.add_concept("product 200", parents=["product 195"])
    assert (again.rows - clf.rows).abs().max() < 1e-5 and again.concepts.graph.num_nodes == len(again.wnids)
    assert again.concepts.graph.parents[-1] == [again.wnids.index("x:product-195")]


def test_stale_stored_rows_are_propagated_again(run, caplog):
    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concepts([{"name": "fluffcat", "parents": "tabby"}])
    store_concepts(clf)
    (run / "concepts.yaml").write_text("- name: fluffcat\n  parents: tabby\n- name: spotcat\n  parents: tabby\n")
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert again.added_wnids == ["x:fluffcat", "x:spotcat"] and "re-propagating" in caplog.text
    (run / "concepts.safetensors").unlink()  # a run from before stored rows: the list is propagated
    old = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert old.added_wnids == again.added_wnids and torch.allclose(old.rows, again.rows, atol=1e-6)
    assert restore_concepts(ZeroShotClassifier.load(_without_concepts(run), device="cpu",
                                                    backbone=clf.backbone)) == 0


def test_two_classifiers_storing_concepts_in_one_run_keep_each_other_s(run, caplog):
    # two processes (a server, a `kgzsl predict` with a new word) loaded the run before either stored
    caplog.set_level("INFO", logger="kgzsl")
    first = ZeroShotClassifier.load(run, device="cpu")
    second = ZeroShotClassifier.load(run, device="cpu", backbone=first.backbone)
    first.add_concepts([{"name": "fluffcat", "parents": "tabby"}])
    store_concepts(first)
    second.add_concepts([{"name": "spotcat", "parents": "tabby"}])
    store_concepts(second)  # finds fluffcat on disk and adds it before writing, instead of dropping it
    assert second.added_wnids == ["x:spotcat", "x:fluffcat"] and "by another process" in caplog.text
    caplog.clear()
    again = ZeroShotClassifier.load(run, device="cpu", backbone=first.backbone)
    assert again.added_wnids == ["x:spotcat", "x:fluffcat"] and torch.equal(again.rows, second.rows)
    assert "re-propagating" not in caplog.text  # the stored rows match the stored list


def _without_concepts(run):
    bare = run.parent / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("concepts.*"))
    return bare


def test_your_names_come_before_wordnet_senses(run, caplog):
    clf = ZeroShotClassifier.load(run, device="cpu")
    assert clf.resolver.resolve("cat").synset == "cat.n.01"
    report = clf.add_concepts([{"name": "coffee maker", "parents": "car", "aliases": ["cat"]}])
    assert any("'cat' is also a WordNet noun" in w for w in report.warnings) and "is also a WordNet noun" in caplog.text
    assert clf.resolver.resolve("cat").wnid == "x:coffee-maker" == clf.resolver.resolve("Coffee Maker").wnid
    assert clf.resolver.resolve("cat.n.01").synset == "cat.n.01"  # the synset name still means WordNet's


def test_existing_nodes_change_nothing_and_problems_change_nothing(run, tmp_path):
    clf = ZeroShotClassifier.load(run, device="cpu")
    rows = clf.rows.clone()
    report = clf.add_concepts([{"name": "cat", "sense": "cat.n.01"}, "tabby"])
    assert report.added == [] and [r.synset for r in report.existing] == ["cat.n.01", "tabby.n.01"]
    assert torch.equal(clf.rows, rows) and clf.concepts.added == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: fine\n  parents: tabby\n- name: lost\n  parents: zzqxblorp\n- blorptastic gizmo\n")
    with pytest.raises(TaxonomyError) as info:
        clf.add_concepts(bad)
    text = str(info.value)
    assert "bad.yaml:3: entry 'lost': parent 'zzqxblorp'" in text and "bad.yaml:5: entry 'blorptastic gizmo': " \
        "'blorptastic gizmo' is not a WordNet noun" in text
    assert torch.equal(clf.rows, rows) and clf.added_wnids == []



@pytest.mark.parametrize("name, text", [("empty.yaml", ""), ("empty.yaml", "# classes to come\n"),
                                        ("empty.csv", "name,parents,description\n")])
def test_a_file_without_entries_is_refused_and_nothing_is_written(run, tmp_path, capsys, name, text):
    from kgzsl.cli import main

    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concept("fluffcat", parents=["tabby"])
    store_concepts(clf)
    stored = {p: p.stat().st_mtime_ns for p in run.glob("concepts.*")}
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=f"^{path} holds no entries; a taxonomy file needs "):
        clf.add_concepts(path)
    assert main(["-q", "add-concept", str(run), "--file", str(path), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.startswith(f"kgzsl add-concept: error: {path} holds no entries")
    assert {p: p.stat().st_mtime_ns for p in run.glob("concepts.*")} == stored
    (run / "concepts.yaml").write_text("")  # the run's own list may be empty: every concept removed by hand
    assert ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone).added_wnids == []

def test_cli_add_concept_file_and_truthful_messages(run, tmp_path, capsys):
    from kgzsl.cli import main

    path = tmp_path / "t.yaml"
    path.write_text(TAXONOMY)
    assert main(["-q", "add-concept", str(run), "--file", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "added 'folding e-scooter' as x:folding-e-scooter" in out and (run / "concepts.safetensors").is_file()
    assert main(["-q", "add-concept", str(run), "cat", "--sense", "cat.n.01", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "'cat' is already a node of the run (cat.n.01" in out and "added" not in out
    assert main(["-q", "add-concept", str(run), "okapi", "--device", "cpu"]) == 0
    assert "'okapi' is already a node" in capsys.readouterr().out
    clf = ZeroShotClassifier.load(run, device="cpu")
    assert clf.resolver.resolve("electric scooter").wnid == "x:e-scooter" and len(clf.concepts.added) == 5
    assert main(["-q", "add-concept", str(run), "--device", "cpu"]) == 1
    assert "give one word" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_model_file_is_reported_before_any_re_propagation(tiny_run, tmp_path, caplog, damage):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concept("fluffcat", parents=["tabby"], description="a very fluffy house cat")
    store_concepts(clf)
    model = run / "model.safetensors"
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    else:
        model.unlink()
    expected = "not a readable safetensors file" if damage == "truncate" else "incomplete: model.safetensors is missing"
    with caplog.at_level("WARNING"), pytest.raises(KgzslError, match=expected):
        ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert "re-propagating" not in caplog.text


def test_rows_missing_after_an_interrupted_add_concept_are_propagated_once_and_stored_again(run, caplog):
    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concepts([{"name": "fluffcat", "parents": "tabby"}])
    store_concepts(clf)
    (run / "concepts.safetensors").unlink()  # interrupted between writing concepts.yaml and the rows
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert again.added_wnids == ["x:fluffcat"] and torch.allclose(again.rows, clf.rows, atol=1e-6)
    assert "concepts.safetensors is missing (an interrupted `kgzsl add-concept`" in caplog.text
    assert (run / "concepts.safetensors").is_file()  # repaired by the load
    caplog.clear()
    third = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert third.concepts.graph is None and "re-propagating" not in caplog.text  # read as stored
    assert torch.equal(third.rows, again.rows)


def test_another_process_s_concepts_are_added_without_repeating_their_warnings(run, caplog):
    first = ZeroShotClassifier.load(run, device="cpu")
    second = ZeroShotClassifier.load(run, device="cpu", backbone=first.backbone)
    first.add_concepts([{"name": "drone", "parents": "airliner"}])  # also a WordNet noun: its adder is warned
    assert "'drone' is also a WordNet noun" in caplog.text
    store_concepts(first)
    caplog.clear()
    second.add_concepts([{"name": "spotcat", "parents": "tabby"}])
    store_concepts(second)  # adds first's drone too, which this process's user never passed
    assert second.added_wnids == ["x:spotcat", "x:drone"] and "also a WordNet noun" not in caplog.text


def test_a_misspelt_word_to_add_suggests_the_wordnet_noun(run):
    clf = ZeroShotClassifier.load(run, device="cpu")
    with pytest.raises(ConceptError, match=r"'tilapiaa' is not a WordNet noun \(did you mean tilapia\? then fix the "
                                           r"name\): say where it belongs"):
        clf.add_concept("tilapiaa")
    assert clf.added_wnids == []


def test_a_label_another_process_stored_is_known_without_loading_the_run_again(run, caplog):
    """A server loaded the run; `kgzsl add-concept` then stored a class in it: the server's next request
    naming it found it, instead of an "unknown label" until some other request happened to add a word."""
    caplog.set_level("INFO", logger="kgzsl")
    server = ZeroShotClassifier.load(run, device="cpu")
    with pytest.raises(KgzslError, match="unknown label 'fluffcat'"):
        server.resolve_labels(["fluffcat", "tabby"])
    cli = ZeroShotClassifier.load(run, device="cpu", backbone=server.backbone)
    cli.add_concepts([{"name": "fluffcat", "parents": "tabby", "description": "a very fluffy house cat"}])
    store_concepts(cli)
    assert [r.wnid for r in server.resolve_labels(["fluffcat", "tabby"])] == ["x:fluffcat", "n02123045"]
    assert "by another process" in caplog.text
    torch.testing.assert_close(server.rows[-1], cli.rows[-1])
    assert server.refresh_concepts() == 0  # the list has not changed since: not read again
    with pytest.raises(KgzslError, match="unknown label 'spotcat'"):
        server.resolve_labels(["spotcat"])


def test_rows_stored_for_a_training_on_another_graph_are_propagated_again(run, caplog):
    """Retrained in place on a graph of another size, the run failed to load: "concepts.safetensors does not
    fit this run", where rows stored for another model are propagated again."""
    from kgzsl.utils.io import load_tensors, read_tensor_metadata, save_tensors

    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.add_concepts([{"name": "fluffcat", "parents": "tabby"}])
    store_concepts(clf)
    path = run / "concepts.safetensors"
    meta, tensors = read_tensor_metadata(path), load_tensors(path)
    # what the file holds after `kgzsl train --out RUN` on a graph of 2 nodes more: another model, another base
    meta.update({"base_nodes": str(int(meta["base_nodes"]) - 2), "sha256/model": "0" * 64})
    save_tensors(path, tensors, metadata=meta)
    again = ZeroShotClassifier.load(run, device="cpu", backbone=clf.backbone)
    assert again.added_wnids == ["x:fluffcat"] and "re-propagating" in caplog.text
    torch.testing.assert_close(again.rows, clf.rows)
