"""DGP: dense graph propagation over ancestors and descendants (Kampffmeyer et al., CVPR 2019)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kgzsl.models.base import PropagationModel
from kgzsl.models.layers import GroupGraphConv
from kgzsl.models.operators import Operator, row_normalized

__all__ = ["DGP"]


class DGP(PropagationModel):
    """Dense graph propagation.

    Every node is linked to all its ancestors, the links grouped by hop distance (group 0 the node
    itself, the last group every distance ``>= num_groups - 1``), each group row-normalised.
    Layers alternate direction: the first reads from descendants, the second from ancestors. Each
    group's contribution is scaled by a learned weight, softmax-normalised over the groups, one
    weight vector per direction. As in the reference code, each layer's bias is added to the
    transformed features before aggregation (``support = XW + b``, then ``sum_g w_g A_g support``),
    so a node's bias is scaled by the weights of the groups it has neighbours in.

    Args:
        in_channels: Node feature size.
        out_channels: Classifier row size.
        hidden_channels: Hidden sizes; ``(2048,)`` gives the paper's two layers.
        num_groups: Distance groups (5: self, 1, 2, 3, >= 4).
        dropout: Dropout on each layer's input (0.5).
        negative_slope: LeakyReLU slope (0.2).
        bias: Layer biases.
        aggregate_bias: Add the biases before aggregation, as published (runs trained before
            kgzsl 0.2 added them after it; :data:`LEGACY_HPARAMS` rebuilds those).
    """

    name = "dgp"
    LEGACY_HPARAMS = {"aggregate_bias": False}

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: Sequence[int] = (2048,),
                 num_groups: int = 5, dropout: float = 0.5, negative_slope: float = 0.2, bias: bool = True,
                 aggregate_bias: bool = True) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, hidden_channels=list(hidden_channels),
                         num_groups=num_groups, dropout=dropout, negative_slope=negative_slope, bias=bias,
                         aggregate_bias=aggregate_bias)
        sizes = [in_channels, *hidden_channels, out_channels]
        self.convs = nn.ModuleList(GroupGraphConv(a, b, bias=bias, dropout=dropout, aggregate_bias=aggregate_bias)
                                   for a, b in zip(sizes, sizes[1:]))
        self.num_groups = num_groups
        self.negative_slope = negative_slope
        self.down_scores = nn.Parameter(torch.ones(num_groups))  # layer weights when reading descendants
        self.up_scores = nn.Parameter(torch.ones(num_groups))  # ... and when reading ancestors

    def operators(self, graph: Any) -> list[list[Operator]]:
        """Even layers read descendants, odd layers ancestors; one operator per distance group."""
        n = graph.num_nodes
        groups = graph.ancestor_groups(self.num_groups)
        down = [row_normalized(g[1], g[0], n) for g in groups]  # ancestor reads its descendants
        up = [row_normalized(g[0], g[1], n) for g in groups]  # node reads its ancestors
        return [down if i % 2 == 0 else up for i in range(len(self.convs))]

    def group_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax-normalised (descendant, ancestor) group weights."""
        return F.softmax(self.down_scores, dim=0), F.softmax(self.up_scores, dim=0)

    def operator_weights(self) -> list[torch.Tensor]:
        """Per layer, the softmax weights of its ``num_groups`` operators (descendant or ancestor ones)."""
        down, up = self.group_weights()
        return [down if i % 2 == 0 else up for i in range(len(self.convs))]

    def extra_repr_fields(self) -> list[str]:
        return [f"groups={self.num_groups}"]
