import pytest
import torch

from kgzsl.models import DGP, GCNZ, SGCN, build_model, restrict
from kgzsl.models.operators import row_normalized, symmetric_adjacency

from conftest import random_tree


def test_symmetric_adjacency_matches_dense_formula(toy):
    adj = symmetric_adjacency(toy.edge_index, toy.num_nodes).to_dense()
    a = torch.zeros(6, 6)
    for c, p, _ in toy.edges:
        a[c, p] = a[p, c] = 1
    a += torch.eye(6)
    d = a.sum(1).pow(-0.5)
    assert torch.allclose(adj, d[:, None] * a * d[None, :], atol=1e-6)


def test_row_normalized_rows_average_neighbours(toy):
    ei = toy.edge_index
    adj = row_normalized(torch.cat([ei[0], ei[1]]), torch.cat([ei[1], ei[0]]), 6, self_loops=True).to_dense()
    assert torch.allclose(adj.sum(1), torch.ones(6))
    assert torch.allclose(adj[1], torch.tensor([1, 1, 0, 1, 1, 0]) / 4)  # animal: entity, itself, dog, cat


def test_dgp_operators_read_descendants_then_ancestors(toy):
    model = DGP(4, 3, hidden_channels=[8], num_groups=3)
    down, up = model.operators(toy)
    assert len(down) == 3 and len(up) == 3
    d1 = down[1].to_dense()  # distance 1, ancestor reads its children
    assert torch.allclose(d1[1], torch.tensor([0, 0, 0, 0.5, 0.5, 0]))
    assert torch.allclose(d1[3], torch.zeros(6))  # a leaf has no descendants
    u2 = up[2].to_dense()  # distance >= 2: dog reads entity
    assert u2[3, 0] == 1 and u2[1].sum() == 0
    assert torch.allclose(down[0].to_dense(), torch.eye(6))


@pytest.mark.parametrize("name", ["gcnz", "sgcn", "dgp"])
def test_output_shape_norm_and_repr(toy, name):
    torch.manual_seed(0)
    model = build_model(name, 5, 7, hidden_channels=[16] * (5 if name == "gcnz" else 1)).eval()
    out = model.predict_rows(torch.randn(6, 5), model.operators(toy))
    assert out.shape == (6, 7)
    assert torch.allclose(out.norm(dim=1), torch.ones(6), atol=1e-5)
    assert repr(model).startswith(name.upper()) and "5 → 16" in repr(model)


@pytest.mark.parametrize("name", ["gcnz", "sgcn", "dgp"])
def test_receptive_field_equals_full_graph(name):
    graph = random_tree(300, seed=1, extra_parents=20)
    torch.manual_seed(0)
    model = build_model(name, 12, 9, hidden_channels=[32] * (5 if name == "gcnz" else 1)).eval()
    x = torch.randn(300, 12)
    layers = model.operators(graph)
    rows = torch.tensor([299, 5, 17, 250, 120])
    with torch.no_grad():
        full = model.predict_rows(x, layers)
        part = model.predict_rows(x, layers, rows)
    assert torch.allclose(full[rows], part, atol=1e-5)
    sliced, inputs = restrict(layers, rows)
    assert sliced[-1][0].shape[0] == 5 and inputs.numel() <= 300


def test_restrict_shrinks_to_neighbourhood(toy):
    model = SGCN(4, 3, hidden_channels=[8])
    sliced, inputs = restrict(model.operators(toy), torch.tensor([5]))
    # car reads artifact and itself; artifact reads entity, car and itself
    assert sorted(inputs.tolist()) == [0, 2, 5]
    assert sliced[1][0].shape == (1, 2)


def test_dgp_group_weights_are_a_softmax():
    model = DGP(4, 3)
    down, up = model.group_weights()
    assert torch.allclose(down, torch.full((5,), 0.2)) and torch.allclose(up.sum(), torch.tensor(1.0))


def test_defaults_follow_the_papers():
    assert [c.out_channels for c in GCNZ(300, 2049).convs] == [2048, 2048, 1024, 1024, 512, 2049]
    assert GCNZ(300, 2049).convs[0].bias is None
    sgcn = SGCN(300, 2049)
    assert [c.out_channels for c in sgcn.convs] == [2048, 2049] and sgcn.convs[0].dropout == 0.5
    assert DGP(300, 2049).num_groups == 5


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("gat", 4, 4)
    with pytest.raises(ValueError, match="bad hyper-parameters for sgcn"):
        build_model("sgcn", 4, 4, num_groups=3)


@pytest.mark.parametrize("name", ["sgcn", "dgp", "gcnz"])
def test_pre_aggregated_first_layer_equals_plain_forward_in_eval(name):
    from kgzsl.models.layers import PreAggregated

    graph = random_tree(200, seed=4, extra_parents=10)
    torch.manual_seed(0)
    model = build_model(name, 8, 6, hidden_channels=[32] * (5 if name == "gcnz" else 1)).eval()
    x = torch.randn(200, 8)
    sliced, inputs = restrict(model.operators(graph), torch.arange(150, 200))
    adjs = [[op.to_torch() for op in ops] for ops in sliced]
    prepared = model.prepare_inputs(x[inputs], adjs)
    assert isinstance(prepared, PreAggregated)  # 8 -> 32 aggregates first
    with torch.no_grad():
        assert torch.allclose(model(prepared, adjs), model(x[inputs], adjs), atol=1e-6)


def test_chunked_rows_equal_full_rows():
    graph = random_tree(120, seed=5, extra_parents=8)
    torch.manual_seed(0)
    model = build_model("dgp", 6, 5, hidden_channels=[16]).eval()
    x = torch.randn(120, 6)
    layers = model.operators(graph)
    with torch.no_grad():
        assert torch.allclose(model.predict_rows(x, layers, chunk_size=25), model.predict_rows(x, layers), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sgcn", "dgp"])
def test_receptive_field_equals_full_graph_on_real_wordnet(name):
    from conftest import wordnet_available

    if not wordnet_available():
        pytest.skip("WordNet 3.0 not installed (apt-get install wordnet-base)")
    from kgzsl.graph import build_wordnet_graph, resolve_wnids

    graph = build_wordnet_graph(resolve_wnids("imagenet1k")[0])  # 1,000 classes + ancestors: 1,860 nodes
    torch.manual_seed(0)
    model = build_model(name, 16, 12, hidden_channels=[64]).eval()
    x = torch.randn(graph.num_nodes, 16)
    layers = model.operators(graph)
    seen = torch.arange(1000)
    with torch.no_grad():
        assert torch.allclose(model.predict_rows(x, layers)[seen], model.predict_rows(x, layers, seen), atol=1e-5)


def test_importing_the_models_shows_no_deprecation_warning_from_torch_geometric_internals():
    import subprocess
    import sys

    # a fresh interpreter: torch_geometric is imported for the first time by kgzsl.models
    done = subprocess.run([sys.executable, "-W", "default", "-c", "import kgzsl.models, torch_geometric.nn"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torch.jit.script" not in done.stderr
