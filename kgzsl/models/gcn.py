"""GCNZ and SGCN: stacks of graph convolutions over one adjacency."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn
from torch_geometric.utils import to_undirected

from kgzsl.models.base import PropagationModel
from kgzsl.models.layers import GroupGraphConv
from kgzsl.models.operators import Operator, row_normalized, symmetric_adjacency

__all__ = ["GCNZ", "SGCN"]


class _StackedGCN(PropagationModel):
    """Graph convolutions ``in → hidden... → out`` with LeakyReLU between and L2-normalised output."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: Sequence[int],
                 dropout: float, negative_slope: float, bias: bool) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, hidden_channels=list(hidden_channels),
                         dropout=dropout, negative_slope=negative_slope, bias=bias)
        sizes = [in_channels, *hidden_channels, out_channels]
        self.convs = nn.ModuleList(GroupGraphConv(a, b, bias=bias, dropout=dropout) for a, b in zip(sizes, sizes[1:]))
        self.negative_slope = negative_slope

    def _adjacency(self, graph: Any) -> Operator:
        raise NotImplementedError

    def operators(self, graph: Any) -> list[list[Operator]]:
        """The same adjacency for every layer."""
        adj = self._adjacency(graph)
        return [[adj] for _ in self.convs]


class GCNZ(_StackedGCN):
    """GCNZ (Wang et al., CVPR 2018): 6 layers over ``D^-1/2 (A+I) D^-1/2`` of the undirected graph.

    Args:
        in_channels: Node feature size.
        out_channels: Classifier row size (``D + 1`` for ``[W | b]`` rows).
        hidden_channels: Hidden sizes; the paper's 2048-2048-1024-1024-512 by default.
        dropout: Dropout on each layer's input.
        negative_slope: LeakyReLU slope.
        bias: Layer biases (GCNZ used none).
    """

    name = "gcnz"

    def __init__(self, in_channels: int, out_channels: int,
                 hidden_channels: Sequence[int] = (2048, 2048, 1024, 1024, 512), dropout: float = 0.0,
                 negative_slope: float = 0.2, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, hidden_channels, dropout, negative_slope, bias)

    def _adjacency(self, graph: Any) -> Operator:
        return symmetric_adjacency(graph.edge_index, graph.num_nodes)


class SGCN(_StackedGCN):
    """SGCN (Kampffmeyer et al., CVPR 2019): 2 layers over the row-normalised ``D^-1 (A+I)``.

    Args:
        in_channels: Node feature size.
        out_channels: Classifier row size.
        hidden_channels: Hidden sizes; ``(2048,)`` by default.
        dropout: Dropout on each layer's input (0.5).
        negative_slope: LeakyReLU slope (0.2).
        bias: Layer biases.
    """

    name = "sgcn"

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: Sequence[int] = (2048,),
                 dropout: float = 0.5, negative_slope: float = 0.2, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, hidden_channels, dropout, negative_slope, bias)

    def _adjacency(self, graph: Any) -> Operator:
        ei = to_undirected(graph.edge_index, num_nodes=graph.num_nodes)
        return row_normalized(ei[1], ei[0], graph.num_nodes, self_loops=True)
