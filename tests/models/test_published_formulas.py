"""DGP and SGCN layers against the papers' formulas, written out densely on a small DAG with non-zero biases."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from kgzsl.models import DGP, SGCN, rebuild_model
from kgzsl.models.layers import PreAggregated

from conftest import random_tree


def _row_normalise(a: torch.Tensor) -> torch.Tensor:
    deg = a.sum(1, keepdim=True)
    return torch.where(deg > 0, a / deg.clamp(min=1), torch.zeros_like(a))


def _randomise(model: torch.nn.Module) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))


@pytest.fixture
def dag():
    return random_tree(12, seed=3, extra_parents=4)


def _distance_groups(graph, num_groups: int) -> list[torch.Tensor]:
    """``G_g[i, j] = 1`` when ``j`` is ``i`` itself (g = 0) or an ancestor ``g`` hops up (the last group: ``>= g``)."""
    up = nx.DiGraph()
    up.add_nodes_from(range(graph.num_nodes))
    up.add_edges_from((c, p) for c, p, _ in graph.edges)
    groups = [torch.zeros(graph.num_nodes, graph.num_nodes) for _ in range(num_groups)]
    for i, hops in nx.all_pairs_shortest_path_length(up):
        for j, d in hops.items():
            groups[min(d, num_groups - 1)][i, j] = 1
    return groups


def test_dgp_is_the_reference_formula_with_biases_before_aggregation(dag):
    k = 3
    model = DGP(5, 4, hidden_channels=[6], num_groups=k, dropout=0.0).eval()
    _randomise(model)
    groups = _distance_groups(dag, k)
    down = [_row_normalise(g.T) for g in groups]  # a node reads its descendants
    up = [_row_normalise(g) for g in groups]  # ... then its ancestors
    a_down, a_up = F.softmax(model.down_scores, 0), F.softmax(model.up_scores, 0)
    x = torch.randn(dag.num_nodes, 5)
    c0, c1 = model.convs
    support = x @ c0.lin.weight.T + c0.bias  # support = XW + b, then sum_g alpha_g A_g support
    hidden = F.leaky_relu(sum(a * m @ support for a, m in zip(a_down, down)), 0.2)
    support = hidden @ c1.lin.weight.T + c1.bias
    expected = F.normalize(sum(a * m @ support for a, m in zip(a_up, up)), dim=-1)

    layers = model.operators(dag)
    adjs = [[op.to_torch() for op in ops] for ops in layers]
    with torch.no_grad():
        assert torch.allclose(model(x, adjs), expected, atol=1e-5)
        # the first aggregation computed once for training gives the same rows
        assert torch.allclose(model(model.prepare_inputs(x, adjs), adjs), expected, atol=1e-5)
        # and so does the receptive field of a few rows
        rows = torch.tensor([0, 5, 11])
        assert torch.allclose(model.predict_rows(x, layers, rows), expected[rows], atol=1e-5)
    # leaves have no descendants: their first-layer bias is scaled by the self group's weight only
    assert c0.aggregate_bias and c1.aggregate_bias


def test_dgp_with_a_bias_after_aggregation_differs_and_legacy_runs_rebuild_that_way(dag):
    model = DGP(5, 4, hidden_channels=[6], num_groups=3, dropout=0.0).eval()
    _randomise(model)
    legacy = rebuild_model("dgp", {k: v for k, v in model.hparams.items() if k != "aggregate_bias"}).eval()
    assert not legacy.convs[0].aggregate_bias
    assert rebuild_model("dgp", dict(model.hparams)).convs[0].aggregate_bias
    legacy.load_state_dict(model.state_dict())
    x = torch.randn(dag.num_nodes, 5)
    adjs = [[op.to_torch() for op in ops] for ops in model.operators(dag)]
    with torch.no_grad():
        assert not torch.allclose(model(x, adjs), legacy(x, adjs), atol=1e-3)


def test_sgcn_is_the_reference_formula_with_biases_after_aggregation(dag):
    model = SGCN(5, 4, hidden_channels=[6], dropout=0.0).eval()
    _randomise(model)
    a = torch.eye(dag.num_nodes)
    for c, p, _ in dag.edges:
        a[c, p] = a[p, c] = 1
    a = _row_normalise(a)  # D^-1 (A + I)
    x = torch.randn(dag.num_nodes, 5)
    c0, c1 = model.convs
    hidden = F.leaky_relu(a @ x @ c0.lin.weight.T + c0.bias, 0.2)
    expected = F.normalize(a @ hidden @ c1.lin.weight.T + c1.bias, dim=-1)
    adjs = [[op.to_torch() for op in ops] for ops in model.operators(dag)]
    with torch.no_grad():
        assert torch.allclose(model(x, adjs), expected, atol=1e-5)
        assert torch.allclose(model(model.prepare_inputs(x, adjs), adjs), expected, atol=1e-5)


def test_pre_aggregated_inputs_carry_the_operators_row_sums(dag):
    model = DGP(5, 4, hidden_channels=[6], num_groups=3)
    adjs = [op.to_torch() for op in model.operators(dag)[0]]
    pre = model.convs[0].pre_aggregate(torch.randn(dag.num_nodes, 5), adjs)
    assert isinstance(pre, PreAggregated) and len(pre.row_sums) == 3
    assert torch.equal(pre.row_sums[0], torch.ones(dag.num_nodes))  # every node is its own group 0
    leaves = [i for i in range(dag.num_nodes) if all(p != i for _, p, _ in dag.edges)]
    assert leaves and all(pre.row_sums[1][i] == 0 for i in leaves)  # no children to read
