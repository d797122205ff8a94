import gzip

import numpy as np
import pytest
import torch

from kgzsl.tasks.benchmarks.fmnist import _conse_scorer, _hierarchy_scorer, _setting_scores
from kgzsl.tasks.benchmarks.fmnist_data import FMNIST_CLASSES, FMNIST_DIR, load_fmnist, stratified_subset
from kgzsl.tasks.benchmarks.runner import format_rows


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_on_written_files(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([4, 0, 9]))
    got, labels = load_fmnist("test", root=tmp_path)
    assert np.array_equal(got, images) and labels.tolist() == [4, 0, 9]
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fmnist("train", root=tmp_path)


@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    images, labels = load_fmnist("test")
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
    idx = stratified_subset(labels, 5, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5] * 10


def test_a_quick_fmnist_run_takes_no_more_train_images_per_class_than_test_images():
    from kgzsl.tasks.benchmarks.fmnist import train_subset

    labels = torch.arange(10).repeat(300)  # 300 train images of each class
    assert np.bincount(labels[train_subset(labels)].numpy()).tolist() == [200] * 10  # the full benchmark
    assert np.bincount(labels[train_subset(labels, 20)].numpy()).tolist() == [20] * 10  # --limit-per-class 20
    assert np.bincount(labels[train_subset(labels, 500)].numpy()).tolist() == [200] * 10  # never more than 200


def test_class_table():
    assert [c.label for c in FMNIST_CLASSES] == list(range(10))
    assert {c.name for c in FMNIST_CLASSES if c.seen} == {"T-shirt/top", "Sandal"}


def test_hierarchy_baselines_use_hyponym_logits():
    logits = torch.tensor([[1.0, 5.0, 3.0]])
    below = [[0, 1], [2], []]  # node 0 covers classes 0 and 1; node 1 covers class 2; node 2 none
    hmax = _hierarchy_scorer(lambda f: logits, below, "max")(torch.zeros(1, 4), [0, 1, 2])
    hmean = _hierarchy_scorer(lambda f: logits, below, "mean")(torch.zeros(1, 4), [0, 1, 2])
    assert hmax[0, :2].tolist() == [5.0, 3.0] and hmax[0, 2] == float("-inf")
    assert hmean[0, :2].tolist() == [3.0, 3.0]


def test_top1_counts_ties_against_as_mean_per_class_does():
    """The hierarchy baselines tie often (two candidates over the same seen classes, -inf for those over none):
    argmax credited a tie to the first candidate, and all-10 top-1 read 0.287 where per class it was 0.214."""
    from kgzsl.tasks.benchmarks.fmnist import _accuracy, _per_class_on
    from kgzsl.tasks.metrics import mean_per_class_accuracy

    scores = torch.tensor([[2.0, 2.0, 0.0], [float("-inf"), float("-inf"), float("-inf")], [0.0, 1.0, 0.0],
                           [0.0, 0.0, 3.0]])
    targets = torch.tensor([0, 1, 1, 2])  # a tie won by argmax, an all -inf row, two clear answers
    assert _accuracy(scores, targets) == 0.5 and mean_per_class_accuracy(scores, targets) == 0.5
    assert _per_class_on(scores, targets, targets) == pytest.approx((0 + 0.5 + 1) / 3)


def test_conse_averages_top_class_embeddings():
    logits = torch.tensor([[10.0, -10.0, -10.0]])
    text = torch.eye(4)  # nodes 0..2 are the seen classes, node 3 a candidate
    scores = _conse_scorer(lambda f: logits, text, seen_nodes=[0, 1, 2], top=2)(torch.zeros(1, 2), [0, 1, 3])
    assert scores[0, 0] > 0.99 and scores[0, 2].abs() < 1e-6


def test_settings_pick_unseen_images_and_columns():
    labels = torch.tensor([0, 1, 2, 5])
    calls = []

    def scorer(feats, nodes):
        calls.append(nodes)
        return torch.zeros(feats.size(0), len(nodes))

    out = _setting_scores(scorer, torch.zeros(4, 3), labels, list(range(100, 110)), unseen=[1, 2, 3])
    assert out["zsl-8"][1].tolist() == [0, 1] and calls[0] == [101, 102, 103]
    assert out["all-10"][1].tolist() == labels.tolist() and calls[1] == list(range(100, 110))


def test_format_rows():
    text = format_rows([{"method": "dgp", "kind": "model", "setting": "zsl-8", "top1": 0.5, "mean_per_class": 0.25}])
    assert "dgp" in text and "0.500" in text and "0.250" in text


def test_weight_space_metrics_ties_count_against():
    from kgzsl.tasks.benchmarks.heldout import weight_space_metrics

    true = torch.eye(3)
    perfect = weight_space_metrics(true.clone(), true)
    assert perfect == {"mean_cosine": pytest.approx(1.0), "hit1": 1.0, "hit5": 1.0}
    swapped = weight_space_metrics(true[[1, 0, 2]], true)
    assert swapped["hit1"] == pytest.approx(1 / 3) and swapped["mean_cosine"] == pytest.approx(1 / 3)
    tied = weight_space_metrics(torch.ones(3, 3), true)  # every predicted row equally close: rank 3
    assert tied["hit1"] == 0.0 and tied["hit5"] == 1.0


def test_conse_rows_average_textual_neighbours():
    from kgzsl.tasks.benchmarks.heldout import conse_rows

    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    rows = conse_rows(text, train_nodes=[0, 1], train_rows=torch.tensor([[2.0], [4.0]]), hidden_nodes=[2], top=1)
    assert rows.tolist() == [[2.0]]


def test_heldout_benchmark_on_a_toy_graph():
    from kgzsl.tasks.benchmarks.heldout import run_heldout
    from kgzsl.training.config import load_config

    from conftest import random_tree

    graph = random_tree(80, seed=3)
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(80, 8), dim=1)
    seen = list(range(30, 80))
    targets = torch.randn(50, 6)
    config = load_config(None, ["model.name=sgcn", "model.hidden_channels=[16]", "train.epochs=5"])
    from kgzsl.tasks.benchmarks.heldout import heldout_splits

    splits = heldout_splits(graph, seen, n_random=10)
    assert all(len(v) == 10 for k, v in splits.items() if k.startswith("random"))
    splits.pop("subtrees")
    result = run_heldout(graph, x, targets, seen, {"sgcn": config}, progress=False, splits=splits)
    methods = {(r["method"], r["split"]) for r in result["rows"]}
    assert ("sgcn", "random-s0") in methods and ("conse", "random-s2") in methods
    assert {s["method"] for s in result["summary"]} == {"sgcn", "conse"}
    assert all(-1 <= r["mean_cosine"] <= 1 for r in result["rows"])
    assert result["hidden_wnids"]["random-s0"] == [graph.wnids[seen[i]] for i in splits["random-s0"]]
    assert all(-1 <= r["val_cosine"] <= 1 for r in result["rows"] if r["method"] == "sgcn")
    conse = load_config(None, ["model.name=conse", "model.neighbours=5", "model.temperature=0.1"])
    both = run_heldout(graph, x, targets, seen, {"conse": conse}, progress=False, splits=splits)
    kinds = {(r["method"], r["kind"]) for r in both["rows"]}
    assert kinds == {("conse", "model"), ("conse-baseline", "baseline")}  # the published baseline stays
    model, base = ([r["mean_cosine"] for r in both["rows"] if r["method"] == m and r["split"] == "random-s0"]
                   for m in ("conse", "conse-baseline"))
    assert model != base  # softmax weights over 5 neighbours of its training rows: other rows


def test_heldout_ensemble_scores_the_normalised_mean_of_the_models_rows(monkeypatch):
    from conftest import random_tree

    from kgzsl.errors import InputError
    from kgzsl.tasks.benchmarks import heldout
    from kgzsl.training.config import load_config

    graph = random_tree(60, seed=4)
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(60, 8), dim=1)
    seen, targets = list(range(20, 60)), torch.randn(40, 6)
    configs = {m: load_config(None, [f"model.name={m}", "model.hidden_channels=[16]", "train.epochs=4"])
               for m in ("sgcn", "dgp")}
    splits = {"random-s0": list(range(0, 40, 4))}
    got: dict[str, torch.Tensor] = {}
    metrics = heldout.weight_space_metrics

    def spy(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
        got[str(len(got))] = pred
        return metrics(pred, true)

    monkeypatch.setattr(heldout, "weight_space_metrics", spy)
    result = heldout.run_heldout(graph, x, targets, seen, configs, progress=False, splits=splits, ensemble=True)
    conse, sgcn, dgp, both = got.values()  # scored in this order
    expected = torch.nn.functional.normalize(torch.nn.functional.normalize(sgcn, dim=1)
                                             + torch.nn.functional.normalize(dgp, dim=1), dim=1)
    assert torch.allclose(both, expected)
    row = next(r for r in result["rows"] if r["method"] == "sgcn+dgp")
    assert row["kind"] == "ensemble" and -1 <= row["val_cosine"] <= 1
    configs["dgp"].train.seed = 1  # another validation split: no ensemble
    with pytest.raises(InputError, match="same validation rows"):
        heldout.run_heldout(graph, x, targets, seen, configs, progress=False, splits=splits, ensemble=True)


def test_time_per_call_counts_calls():
    from kgzsl.tasks.benchmarks.speed import time_per_call

    calls = []
    seconds = time_per_call(lambda: calls.append(1), repeat=4, warmup=2)
    assert len(calls) == 6 and seconds >= 0


def test_round_medians_rotate_and_pair_by_round():
    from kgzsl.tasks.benchmarks.speed import paired_overhead, round_medians

    order = []
    times = round_medians({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, calls=3, rounds=4)
    assert len(times["a"]) == len(times["b"]) == 4
    assert order[2:] == (["a"] * 4 + ["b"] * 4 + ["b"] * 4 + ["a"] * 4) * 2  # handover + 3 timed; order rotates
    drift = {"base": [1.0, 2.0, 4.0], "x": [1.1, 2.2, 4.4]}  # load drifts between rounds; the ratio does not
    assert abs(paired_overhead(drift, "x", "base") - 0.1) < 1e-12


def test_head_path_reads_any_classifier_head():
    """B3 times the classifier's own head: a grouped head (a list that claims seen classes) has no int8 path."""
    import torch

    from kgzsl.inference.claims import GroupHead
    from kgzsl.tasks.benchmarks.speed import head_path

    rows = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    grouped = GroupHead(rows, [3], rows[3:], [[0], [1]], [[3], []])
    assert head_path(grouped, 1) == head_path(grouped, 64) == "float32"


def _moved_toy_run(root, recorded_graph):
    """A hand-built run folder carrying its graph (the toy taxonomy) and node features, whose run.json
    records the graph folder ``recorded_graph``."""
    import json

    from kgzsl.utils.io import save_tensors

    from conftest import toy_graph

    run = root / "run"
    toy_graph().save(run)  # nodes.tsv, edges.tsv, ancestors.tsv, manifest.json: the run's own copy
    features = torch.nn.functional.normalize(torch.arange(18.0).reshape(6, 3) + 1, dim=1)
    save_tensors(run / "node_features.safetensors", {"features": features},
                 metadata={"encoder": "minilm", "use_gloss": "False"})
    summary = {"graph": str(recorded_graph), "config": {"features": {"encoder": "minilm", "gloss": False},
                                                        "backbone": {"name": "none", "weights": "DEFAULT"}}}
    (run / "run.json").write_text(json.dumps(summary))
    return run, summary, features


def test_fmnist_reads_the_graph_and_features_of_a_moved_run(tmp_path, monkeypatch):
    from kgzsl.tasks.benchmarks import fmnist
    from kgzsl.text import features as text_features

    run, summary, stored = _moved_toy_run(tmp_path, tmp_path / "no-such-graph")

    def no_encoding(*args, **kwargs):
        raise AssertionError("the run's node features are stored: nothing to encode")

    monkeypatch.setattr(text_features, "node_features", no_encoding)
    graph, text = fmnist._run_graph_and_text(run, summary)
    assert graph.wnids == [f"x{i}" for i in range(6)] and torch.equal(text, stored)
    index, _ = graph.ancestor_index()
    assert (3, 0) in set(zip(index[0].tolist(), index[1].tolist()))  # dog's ancestors: the hierarchy baselines'

    class Reached(Exception):
        pass

    def backbone(*args, **kwargs):  # the graph and features were read: stop before the images
        raise Reached

    monkeypatch.setattr("kgzsl.vision.backbones.load_backbone", backbone)
    with pytest.raises(Reached):  # not "no-such-graph is not a kgzsl graph"
        fmnist.run_fmnist({"dgp": run}, tmp_path / "out", progress=False)


def test_fmnist_uses_the_runs_copy_not_the_recorded_graph_folder(tmp_path, monkeypatch):
    from kgzsl.tasks.benchmarks import fmnist

    from conftest import random_tree

    graph_dir = tmp_path / "graph"
    random_tree(9).save(graph_dir)  # the recorded folder now holds another graph
    before = sorted(p.name for p in graph_dir.rglob("*"))
    run, summary, stored = _moved_toy_run(tmp_path, graph_dir)
    graph, text = fmnist._run_graph_and_text(run, summary)
    assert graph.num_nodes == 6 and graph.path == run and torch.equal(text, stored)

    class Reached(Exception):
        pass

    def backbone(*args, **kwargs):
        raise Reached

    monkeypatch.setattr("kgzsl.vision.backbones.load_backbone", backbone)
    with pytest.raises(Reached):
        fmnist.run_fmnist({"dgp": run}, tmp_path / "out", progress=False)
    assert sorted(p.name for p in graph_dir.rglob("*")) == before  # no feature cache written into it


def test_the_feature_cache_tells_apart_weights_that_differ_only_at_the_end():
    from types import SimpleNamespace

    from kgzsl.tasks.benchmarks.fmnist_data import _cache_name

    first, second = ("/runs/demo/finetune/backbone.safetensors (fine-tuned from x; sha256 %s)" % d
                     for d in ("0123456789abcdef", "fedcba9876543210"))  # two fine-tunes of one run
    names = {_cache_name("test", "all", SimpleNamespace(name="efficientnet-lite0", weights=w)) for w in (first, second)}
    assert len(names) == 2 and all(n.startswith("fmnist-test-all-efficientnet-lite0-_runs_demo") for n in names)
