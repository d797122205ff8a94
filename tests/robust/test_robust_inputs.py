"""Bad inputs other than image files: each gets an error that names the input and the fix.

Labels (unknown, ambiguous, duplicate, empty, not a noun synset), configs (malformed YAML, unknown
keys, not UTF-8), graph folders (another format version, a broken manifest), run folders and
backbones that do not match (node count, backbone name, feature size, weights), and the CLI's
reporting of all of these (exit code 1 and one line on stderr, never a traceback).
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch

from kgzsl.inference.classifier import RunFormatError, RunNotFoundError, ZeroShotClassifier
from kgzsl.cli import main
from kgzsl.training.config import ConfigError, load_config
from kgzsl.graph import GraphFormatError, KnowledgeGraph
from kgzsl.utils.io import TensorFileError, save_tensors
from kgzsl.inference.labels import LabelError, LabelResolver

from conftest import requires_wordnet
from robust_helpers import FakeBackbone, fake_run


@pytest.fixture
def resolver(toy) -> LabelResolver:
    return LabelResolver(toy.wnids, toy.names, toy.lemmas, wordnet=None)


# ---------------------------------------------------------------- labels, without WordNet

def test_unknown_label_names_it_and_suggests(resolver):
    with pytest.raises(LabelError, match=r"unknown label 'dogg'.*did you mean dog\?"):
        resolver.resolve("dogg")
    with pytest.raises(LabelError, match=r"unknown label 'qqq'.*check the spelling"):
        resolver.resolve("qqq")


def test_duplicate_labels_name_both(resolver):
    with pytest.raises(LabelError, match=r"'dog' and 'dog.n.01' both resolve to dog.n.01 \(x3\); keep one"):
        resolver.resolve_all(["dog", "cat", "dog.n.01"])
    with pytest.raises(LabelError, match=r"'cat' and 'cat' both resolve"):
        resolver.resolve_all("cat,cat")


@pytest.mark.parametrize("labels", [[], ""])
def test_empty_label_list(resolver, labels):
    with pytest.raises(LabelError, match="empty"):
        resolver.resolve_all(labels)


def test_every_failing_label_is_listed(resolver):
    with pytest.raises(LabelError) as err:
        resolver.resolve_all(["dog", "zzzz", "  ", "n99999999"])
    message = str(err.value)
    assert "'zzzz'" in message and "empty label" in message and "n99999999" in message


@pytest.mark.parametrize("label, pos", [("v01234567", "verb"), ("run.v.01", "verb"), ("red.a.01", "adjective"),
                                        ("a00001740", "adjective"), ("quickly.r.01", "adverb")])
def test_non_noun_ids_and_synsets_are_refused(resolver, label, pos):
    with pytest.raises(LabelError, match=f"names a WordNet {pos}, but classes are noun synsets"):
        resolver.resolve(label)


def test_custom_node_ids_still_resolve(resolver):
    assert resolver.resolve("x4").synset == "cat.n.01"


# ---------------------------------------------------------------- labels, with WordNet

@requires_wordnet
def test_wnid_that_is_not_a_noun_synset():
    from kgzsl.graph import load_wordnet

    res = LabelResolver(["n02084071"], ["dog.n.01"], [["dog"]], wordnet=load_wordnet)
    with pytest.raises(LabelError, match="n99999999 is not a WordNet 3.0 noun synset; check the id"):
        res.resolve("n99999999")
    with pytest.raises(LabelError, match=r"n02121620 \(cat.n.01\) is not a node of this graph; rebuild"):
        res.resolve("n02121620")
    with pytest.raises(LabelError, match="'dog.n.99' is not a WordNet 3.0 noun synset; check the sense"):
        res.resolve("dog.n.99")
    with pytest.raises(LabelError, match=r"synset cat.n.01 \(n02121620\) is not a node of this graph"):
        res.resolve("cat.n.01")
    assert res.resolve("Dog.n.01").synset == "dog.n.01"  # another spelling of a node's synset


@requires_wordnet
def test_building_a_graph_from_a_non_noun_wnid_lists_it():
    from kgzsl.graph import build_wordnet_graph

    with pytest.raises(ValueError, match=r"2 of 3 wnids are not WordNet 3.0 noun synsets:\n.*n99999999.*\n.*dog"):
        build_wordnet_graph(["n02084071", "n99999999", "dog"])


@requires_wordnet
def test_ambiguous_label_takes_the_commonest_sense_and_says_how_to_pick_another(caplog):
    from kgzsl.graph import load_wordnet

    wn = load_wordnet()
    senses = wn.synsets("crane", "n")
    res = LabelResolver([f"n{s.offset():08d}" for s in senses], [s.name() for s in senses],
                        [s.lemma_names() for s in senses], wordnet=load_wordnet)
    with caplog.at_level(logging.INFO, logger="kgzsl.inference.labels"):
        got = res.resolve("crane")
    assert got.synset in {s.name() for s in senses} and len(got.alternatives) == len(senses) - 1
    assert "ambiguous" in caplog.text and "pass a synset name such as" in caplog.text
    other = got.alternatives[0]
    assert res.resolve(other).synset == other  # the fix works


# ---------------------------------------------------------------- configs

def test_config_errors_name_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match=f"{bad} is not valid YAML"):
        load_config(bad)
    bad.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) learning_rate; valid keys: epochs, lr, weight_decay"):
        load_config(bad)
    bad.write_bytes(b"name: caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match="not UTF-8 text.*save it as UTF-8"):
        load_config(bad)
    with pytest.raises(FileNotFoundError,
                       match=r"YAML file.s path or name a shipped config \(--config .*\bdgp\b.*, in /.*configs\)$"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path)  # a directory


def test_checkpoint_every_is_a_typed_train_setting():
    assert load_config(None, ["train.checkpoint_every=5"]).train.checkpoint_every == 5
    with pytest.raises(ConfigError, match="expected int"):
        load_config(None, ["train.checkpoint_every=often"])


# ---------------------------------------------------------------- graph folders

def test_graph_from_another_kgzsl_version(tmp_path, toy):
    toy.save(tmp_path / "g")
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    manifest.update(format_version=2, kgzsl_version="9.0.0")
    (tmp_path / "g" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GraphFormatError, match=r"has graph format 2, this kgzsl reads format 1 \(written by kgzsl "
                                               r"9.0.0\); rebuild it with `kgzsl build-graph`"):
        KnowledgeGraph.load(tmp_path / "g")


@pytest.mark.parametrize("manifest, match", [
    ("[1, 2]", "must hold a JSON object"), ("{", "not valid JSON"), ('{"format_version": 1, "relations": 3}',
                                                                   "'relations' must be a list"),
    (b"\xff\xfe{}", "not valid JSON")])
def test_broken_manifest(tmp_path, toy, manifest, match):
    toy.save(tmp_path / "g")
    path = tmp_path / "g" / "manifest.json"
    path.write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    with pytest.raises(GraphFormatError, match=match):
        KnowledgeGraph.load(tmp_path / "g")


def test_broken_graph_tables(tmp_path, toy):
    toy.save(tmp_path / "g")
    (tmp_path / "g" / "edges.tsv").write_bytes(b"source\ttarget\trelation\tweight\nx1\tx0\thypernym\t1\n\xff\n")
    with pytest.raises(GraphFormatError, match="edges.tsv is not UTF-8.*rebuild"):
        KnowledgeGraph.load(tmp_path / "g")
    (tmp_path / "g" / "edges.tsv").write_text("source\ttarget\trelation\tweight\nx1\tx0\n")
    with pytest.raises(GraphFormatError, match=r"edges.tsv:2: expected 4 tab-separated fields, got 2"):
        KnowledgeGraph.load(tmp_path / "g")
    (tmp_path / "g" / "edges.tsv").write_text("source\ttarget\trelation\tweight\nx1\tx0\thypernym\t1\n")
    (tmp_path / "g" / "ancestors.tsv").write_text("node\tancestor\tdistance\nx1\tx0\t" + "9" * 30 + "\n")
    with pytest.raises(GraphFormatError, match="malformed weight or distance"):
        KnowledgeGraph.load(tmp_path / "g")
    with pytest.raises(GraphFormatError, match="no manifest.json"):
        KnowledgeGraph.load(tmp_path / "missing")


# ---------------------------------------------------------------- run folders and backbones

def test_run_trained_for_another_backbone(tmp_path):
    run = fake_run(tmp_path / "run")
    with pytest.raises(RunFormatError, match=r"trained for backbone 'fakenet', not 'othernet'; load it without "
                                             r"`backbone=`"):
        ZeroShotClassifier.load(run, backbone=FakeBackbone(name="othernet"))
    with pytest.raises(RunFormatError, match=r"does not fit this backbone: rows have 4 columns but backbone fakenet "
                                             r"gives 7-d features"):
        ZeroShotClassifier.load(run, backbone=FakeBackbone(feature_dim=7))
    assert ZeroShotClassifier.load(run, backbone=FakeBackbone()).rows.shape == (3, 4)


def test_run_with_other_backbone_weights_warns(tmp_path, caplog):
    run = fake_run(tmp_path / "run")
    ZeroShotClassifier.load(run, backbone=FakeBackbone(weights="retrained weights"))
    assert "trained on backbone weights 'fake weights'" in caplog.text


def test_run_whose_node_count_does_not_match(tmp_path):
    run = fake_run(tmp_path / "run", num_nodes=3)
    with open(run / "nodes.tsv", "a") as fh:
        fh.write("x9\tbus.n.01\tbus\ta bus\n")
    with pytest.raises(RunFormatError, match=r"rows.safetensors has 3 rows but .*nodes.tsv lists 4 nodes: the files "
                                             r"come from different runs"):
        ZeroShotClassifier.load(run, backbone=FakeBackbone())
    run = fake_run(tmp_path / "run2", num_nodes=3)
    (run / "run.json").write_text(json.dumps({"backbone": "fakenet", "num_nodes": 5}))
    with pytest.raises(RunFormatError, match="records 5 nodes but .* lists 3"):
        ZeroShotClassifier.load(run, backbone=FakeBackbone())


@pytest.mark.parametrize("damage, error, match", [
    ("truncate_rows", TensorFileError, "rows.safetensors is not a readable safetensors file"),
    ("remove_rows", RunNotFoundError, "incomplete: rows.safetensors is missing"),
    ("remove_nodes", RunNotFoundError, "incomplete: nodes.tsv is missing"),
    ("bad_json", RunFormatError, "run.json is not valid JSON"),
    ("short_node_line", RunFormatError, r"nodes.tsv:3: expected wnid, name, lemmas and gloss"),
    ("nan_rows", RunFormatError, "NaN or infinite rows: the file is damaged, or the training diverged.* lower train.lr"),
    ("no_rows_tensor", RunFormatError, "holds no .* 'rows' tensor"),
    ("backbone_disagrees", RunFormatError, "written for backbone 'resnet50' but"),
])
def test_damaged_run_folder(tmp_path, damage, error, match):
    run = fake_run(tmp_path / "run")
    if damage == "truncate_rows":
        data = (run / "rows.safetensors").read_bytes()
        (run / "rows.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "remove_rows":
        (run / "rows.safetensors").unlink()
    elif damage == "remove_nodes":
        (run / "nodes.tsv").unlink()
    elif damage == "bad_json":
        (run / "run.json").write_text("{not json")
    elif damage == "short_node_line":
        text = (run / "nodes.tsv").read_text().splitlines()
        text[2] = "x1"
        (run / "nodes.tsv").write_text("\n".join(text) + "\n")
    elif damage == "nan_rows":
        fake_run(run, rows=torch.full((3, 4), float("nan")))
    elif damage == "no_rows_tensor":
        save_tensors(run / "rows.safetensors", {"other": torch.zeros(3, 4)})
    elif damage == "backbone_disagrees":
        save_tensors(run / "rows.safetensors", {"rows": torch.zeros(3, 4)}, metadata={"backbone": "resnet50"})
    with pytest.raises(error, match=match):
        ZeroShotClassifier.load(run, backbone=FakeBackbone())


@pytest.mark.slow
def test_real_run_with_another_backbone(tiny_run):
    from kgzsl.vision.backbones import load_backbone

    other = load_backbone("resnet18", weights=None, device="cpu")
    with pytest.raises(RunFormatError, match="trained for backbone 'efficientnet-lite0', not 'resnet18'"):
        ZeroShotClassifier.load(tiny_run, backbone=other)


def test_backbone_weights_of_another_architecture(tmp_path):
    from kgzsl.vision.backbones import load_backbone

    state = load_backbone("resnet18", weights=None, device="cpu").body.state_dict()
    state["fc.weight"] = torch.zeros(10, 512)  # a 10-class head: same keys, other shapes
    state["fc.bias"] = torch.zeros(10)
    torch.save(state, tmp_path / "ten_classes.pth")
    with pytest.raises(ValueError, match=r"(?s)ten_classes.pth does not fit the model .*size mismatch"):
        load_backbone("resnet18", weights=str(tmp_path / "ten_classes.pth"), device="cpu")
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth does not fit the model: missing keys"):
        load_backbone("resnet18", weights=str(tmp_path / "other.pth"), device="cpu")


# ---------------------------------------------------------------- the CLI reports, never crashes

@pytest.mark.parametrize("argv, match", [
    (["predict", "{tmp}/no-run", "x.jpg"], "run folder .*no-run not found; check the path"),
    (["train", "--config", "{tmp}/missing.yaml"], "config file not found"),
    (["train", "train.epochs=lots"], "expected int"),
    (["train", "--config", "{tmp}/bad.yaml"], "not valid YAML"),
    (["train", "modle.name=dgp"], r"unknown key\(s\) modle; valid keys"),
    (["train", "graph.path={tmp}/oldgraph", "graph.wnids=imagenet1k"], "has graph format 0"),
    (["predict", "{tmp}/run", "x.jpg", "--labels", "x1,dog.n.01"], "'x1' and 'dog.n.01' both resolve"),
    (["predict", "{tmp}/run", "x.jpg", "--labels", ""], "empty label"),
])
def test_cli_reports_bad_inputs_with_exit_code_1(tmp_path, capsys, monkeypatch, argv, match):
    (tmp_path / "bad.yaml").write_text("train: {lr: 0.1\n")
    (tmp_path / "oldgraph").mkdir()
    (tmp_path / "oldgraph" / "manifest.json").write_text('{"format_version": 0, "kgzsl_version": "0.0.1"}')
    fake_run(tmp_path / "run", backbone="fakenet")
    import kgzsl.vision.backbones

    monkeypatch.setattr(kgzsl.vision.backbones, "load_backbone", lambda *a, **k: FakeBackbone())
    code = main(["-q", *[a.replace("{tmp}", str(tmp_path)) for a in argv]])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"kgzsl {argv[0]}: error:" in err and re.search(match, err), err


@pytest.mark.parametrize("argv, match", [
    (["predict", "RUN", "x.jpg", "--top-k", "0"], "argument --top-k: must be >= 1, got 0"),
    (["search", "RUN", "x.index", "cat", "--top-k", "many"], "argument --top-k: expected an integer, got 'many'"),
    (["index", "RUN", "DIR", "--out", "x.index", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
    (["evaluate", "RUN", "--data", "D", "--split", "2-hops", "--workers", "-1"], "argument --workers: must be >= 0"),
    (["benchmark", "fmnist", "--limit-per-class", "0"], "argument --limit-per-class: must be >= 1, got 0"),
    (["benchmark", "fmnist", "--json", "out.json", "extra"], "unrecognized arguments: extra"),
])
def test_cli_usage_errors_exit_with_code_2_before_any_work(capsys, argv, match):
    with pytest.raises(SystemExit) as exc:
        main(["-q", *argv])
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_predict_logs_each_bad_image_once_and_predict_detailed_returns_it(tmp_path, caplog):
    from PIL import Image

    fake_run(tmp_path / "run", backbone="fakenet")
    clf = ZeroShotClassifier.load(tmp_path / "run", backbone=FakeBackbone())
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(good)
    bad.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        records = clf.predict_detailed([good, bad], ["x0", "x1"], top_k=1)
    assert "error" in records[1] and caplog.records == []  # returned to the caller, not logged as well
    with caplog.at_level(logging.WARNING):
        preds = clf.predict([good, bad], ["x0", "x1"], top_k=1)
    assert len(preds[0]) == 1 and preds[1] == []
    assert [r.getMessage() for r in caplog.records] == [f"skipping image: {records[1]['error']}"]
