"""The shared forward and repr of every propagation model (kgzsl.models.base)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kgzsl.models import DGP, SGCN
from kgzsl.models.base import PropagationModel
from kgzsl.models.layers import GroupGraphConv
from kgzsl.models.operators import Operator


class TwoLayers(PropagationModel):
    """The least a model needs: ``convs``, ``negative_slope`` and operators."""

    name = "two"

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([GroupGraphConv(3, 4, dropout=0.25), GroupGraphConv(4, 2)])
        self.negative_slope = 0.1

    def operators(self, graph):
        raise NotImplementedError  # not needed: the test hands in its operators


def _csr(dense: torch.Tensor) -> torch.Tensor:
    row, col = dense.nonzero(as_tuple=True)
    return Operator(row=row, col=col, value=dense[row, col], shape=tuple(dense.shape)).to_torch()


def test_forward_runs_the_layers_with_leaky_relu_between_and_unit_rows():
    torch.manual_seed(0)
    model = TwoLayers().eval()
    x, a = torch.randn(3, 3), torch.ones(3, 3) / 3
    out = model(x, [[_csr(a)], [_csr(torch.eye(3))]])
    c0, c1 = model.convs
    hidden = F.leaky_relu(a @ x @ c0.lin.weight.T + c0.bias, 0.1)
    expected = F.normalize(hidden @ c1.lin.weight.T + c1.bias, dim=-1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert repr(model) == "TwoLayers(3 → 4 → 2, dropout=0.25)"


def test_dgp_weights_its_operators_and_adds_its_groups_to_the_repr():
    torch.manual_seed(0)
    model = DGP(3, 2, hidden_channels=[4], num_groups=2, dropout=0.0).eval()
    with torch.no_grad():
        model.down_scores.copy_(torch.tensor([0.0, 1.0]))
    down, up = model.operator_weights()
    assert torch.allclose(down, torch.softmax(torch.tensor([0.0, 1.0]), 0)) and torch.allclose(up, torch.ones(2) / 2)
    x, a = torch.randn(3, 3), torch.ones(3, 3) / 3
    ops = [_csr(torch.eye(3)), _csr(a)]
    out = model(x, [ops, ops])
    c0, c1 = model.convs
    mix = lambda w: w[0] * torch.eye(3) + w[1] * a  # noqa: E731
    hidden = F.leaky_relu(mix(down) @ x @ c0.lin.weight.T + c0.bias, 0.2)
    assert torch.allclose(out, F.normalize(mix(up) @ hidden @ c1.lin.weight.T + c1.bias, dim=-1), atol=1e-6)
    assert repr(model) == "DGP(3 → 4 → 2, groups=2, dropout=0.0)"
    assert repr(SGCN(3, 2, hidden_channels=[5])) == "SGCN(3 → 5 → 2, dropout=0.5)"
