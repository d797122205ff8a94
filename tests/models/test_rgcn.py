"""R-GCN: operators, a dense reference, receptive fields, training on WordNet-like and ConceptNet graphs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from kgzsl.training.config import TrainConfig, config_to_dict, load_config
from kgzsl.graph import KnowledgeGraph
from kgzsl.models import MODELS, build_model, restrict
from kgzsl.models.rgcn import RGCN, RelationalGraphConv
from kgzsl.training.fit import fit

from conftest import random_tree


@pytest.fixture(autouse=True)
def _one_thread():
    """These graphs are tiny: with more threads, thread hand-offs dominate on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _two_relation_tree(num_nodes: int = 300) -> KnowledgeGraph:
    g = random_tree(num_nodes, seed=1, extra_parents=20)
    g.edges = [(c, p, 1 if c % 7 == 0 else 0) for c, p, _ in g.edges]  # some instance_hypernym edges
    return g


def _fit(model: RGCN, graph: KnowledgeGraph, rows: torch.Tensor, dim: int = 8, epochs: int = 300) -> float:
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(graph.num_nodes, 16), dim=1)
    targets = torch.nn.functional.normalize(torch.randn(rows.numel(), dim), dim=1)
    layers = model.operators(graph)
    config = dataclasses.replace(TrainConfig(), epochs=epochs, lr=0.01, weight_decay=0.0, patience=epochs,
                                 device="cpu")
    empty = torch.zeros(0, dtype=torch.long)
    fit(model, x, layers, rows, targets, empty, torch.zeros(0, dim), config, progress=False)
    with torch.no_grad():
        return float((model.predict_rows(x, layers, rows) * targets).sum(1).min())


def test_registered_and_configurable() -> None:
    assert MODELS["rgcn"] is RGCN
    config = load_config(None, ["model.name=rgcn", "model.hidden_channels=[32]"])
    params = {k: v for k, v in config_to_dict(config.model).items() if k != "name"}
    model = build_model(config.model.name, 10, 6, **params)
    assert isinstance(model, RGCN) and model.convs[0].out_channels == 32
    with pytest.raises(ValueError, match="bad hyper-parameters for rgcn"):
        build_model("rgcn", 4, 4, num_groups=3)
    with pytest.raises(ValueError, match="num_bases"):
        RGCN(4, 4, num_bases=0)


def test_shapes_norm_and_repr_on_wordnet_toy(toy: KnowledgeGraph) -> None:
    torch.manual_seed(0)
    model = build_model("rgcn", 5, 7, hidden_channels=[16])
    assert "relations=unbound" in repr(model)
    layers = model.eval().operators(toy)
    assert model.relations == ["hypernym", "instance_hypernym"] == model.hparams["relations"]
    assert [len(ops) for ops in layers] == [5, 5]  # self + 2 relations x 2 directions
    out = model.predict_rows(torch.randn(6, 5), layers)
    assert out.shape == (6, 7) and torch.allclose(out.norm(dim=1), torch.ones(6), atol=1e-5)
    assert repr(model) == "RGCN(5 → 16 → 7, relations=2, bases=4, dropout=0.5)"
    assert "RelationalGraphConv(5, 16, bases=4, operators=4" in repr(model.convs[0])


def test_operators_read_both_directions_with_weights(toy: KnowledgeGraph) -> None:
    self_op, up, down, inst_up, inst_down = RGCN(4, 3).operators(toy)[0]
    assert torch.equal(self_op.to_dense(), torch.eye(6)) and inst_up.nnz == inst_down.nnz == 0
    assert torch.allclose(up.to_dense()[3], torch.tensor([0.0, 1, 0, 0, 0, 0]))  # dog reads animal
    assert torch.allclose(down.to_dense()[1], torch.tensor([0, 0, 0, 0.5, 0.5, 0]))  # animal reads dog, cat
    toy.weights = [1.0, 3.0, 1.0, 1.0, 1.0]  # artifact → entity weighs 3
    weighted = RGCN(4, 3).operators(toy)[0][2].to_dense()
    assert torch.allclose(weighted[0], torch.tensor([0, 0.25, 0.75, 0, 0, 0]))  # entity: weighted mean
    plain = RGCN(4, 3, edge_weights=False).operators(toy)[0][2].to_dense()
    assert torch.allclose(plain[0], torch.tensor([0, 0.5, 0.5, 0, 0, 0]))


def test_layer_matches_dense_reference_and_its_gradients() -> None:
    torch.manual_seed(0)
    graph = _two_relation_tree(40)
    model = RGCN(6, 5, hidden_channels=[], num_bases=3, dropout=0.0).double()
    ops = model.operators(graph)[0]
    conv: RelationalGraphConv = model.convs[0]
    x = torch.randn(40, 6, dtype=torch.float64, requires_grad=True)
    out = conv(x, [op.to_torch().to(torch.float64) for op in ops])
    w = torch.einsum("kb,bio->kio", conv.comp, conv.basis)  # every W_r, materialised
    ref = x @ conv.root.weight.T + conv.bias
    for k, op in enumerate(ops[1:]):
        ref = ref + op.to_dense().double() @ x @ w[k]
    assert torch.allclose(out, ref, atol=1e-10)
    grads = torch.autograd.grad(out.square().sum(), [x, conv.comp, conv.basis])
    refs = torch.autograd.grad(ref.square().sum(), [x, conv.comp, conv.basis])
    for g, r in zip(grads, refs):
        assert torch.allclose(g, r, atol=1e-8)


def test_receptive_field_equals_full_graph() -> None:
    graph = _two_relation_tree()
    torch.manual_seed(0)
    model = RGCN(12, 9, hidden_channels=[32]).eval()
    x = torch.randn(300, 12)
    layers = model.operators(graph)
    rows = torch.tensor([299, 5, 17, 250, 120])
    with torch.no_grad():
        full = model.predict_rows(x, layers)
        part = model.predict_rows(x, layers, rows)
    assert torch.allclose(full[rows], part, atol=1e-5)
    sliced, inputs = restrict(layers, rows)
    assert sliced[-1][0].shape[0] == 5 and inputs.numel() < 300


def test_relations_are_recorded_and_checked(toy: KnowledgeGraph) -> None:
    model = RGCN(4, 3, hidden_channels=[8])
    model.operators(toy)
    rebuilt = RGCN(**model.hparams)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.relations == model.relations
    toy.relations = ["hypernym", "IsA"]
    with pytest.raises(ValueError, match=r"\['IsA'\] are unknown"):
        rebuilt.operators(toy)
    toy.relations = ["instance_hypernym"]  # a subset is fine: the missing relation reads nothing
    assert len(rebuilt.operators(toy)[0]) == 5


def test_training_recovers_seen_rows_on_wordnet_toy(toy: KnowledgeGraph) -> None:
    model = RGCN(16, 8, hidden_channels=[64], dropout=0.0)
    assert _fit(model, toy, torch.tensor([3, 4, 5])) > 0.95


def test_training_recovers_seen_rows_on_conceptnet_fixture(tmp_path: Path) -> None:
    from kgzsl.graph.conceptnet import build_conceptnet_graph
    from kgzsl.graph.conceptnet_fixture import FIXTURE_CLASSES, write_fixture

    info = write_fixture(tmp_path / "cn.csv.gz")
    graph = build_conceptnet_graph(info["path"], FIXTURE_CLASSES, topk=(5, 3), progress=False)
    model = RGCN(16, 8, hidden_channels=[64])  # default dropout 0.5
    assert len(model.operators(graph)[0]) == 1 + 2 * len(graph.relations)
    assert _fit(model, graph, torch.arange(5), epochs=400) > 0.9  # 5 classes seen, scooter unseen
