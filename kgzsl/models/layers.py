"""One graph-propagation layer shared by every kgzsl model."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.utils import spmm

__all__ = ["GroupGraphConv", "PreAggregated"]


class PreAggregated(NamedTuple):
    """A first layer's aggregations ``A_g x`` of fixed input features, computed once for training.

    Passed to :class:`GroupGraphConv` in place of ``x``: the layer then only mixes the parts with
    its group weights, applies dropout to the mixed aggregate (not to ``x``: the one place where
    training differs from the reference code) and transforms.
    """

    parts: list[torch.Tensor]


class GroupGraphConv(nn.Module):
    r"""A graph convolution over one or more weighted sparse operators.

    .. math::
        X' = \sum_g \alpha_g A_g \, \mathrm{dropout}(X) W + b

    With a single operator and :math:`\alpha = 1` this is GCN's layer; with several it is DGP's
    distance-grouped layer (:math:`\alpha` given by the caller, e.g. a softmax of learned scores).
    The product is taken in the cheaper order (aggregate then transform, or the reverse), counted
    from the operator sizes and non-zeros. Operators may be rectangular (a receptive-field
    slice), mapping ``N_in`` input rows to ``N_out`` output rows.

    Args:
        in_channels: Input feature size.
        out_channels: Output feature size.
        bias: Add a learnable bias after aggregation.
        dropout: Dropout probability on the layer input.

    Shapes:
        - input: ``x [N_in, in_channels]``, ``adjs``: list of sparse ``[N_out, N_in]``,
          ``weights [len(adjs)]`` or None
        - output: ``[N_out, out_channels]``
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dropout = dropout
        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer="glorot")
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot weights, zero bias."""
        self.lin.reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def aggregates_first(self, num_inputs: int, adjs: list[torch.Tensor]) -> bool:
        """Whether aggregating before transforming is the cheaper order for these operators."""
        nnz = sum(adj._nnz() for adj in adjs)
        d_in, d_out = self.in_channels, self.out_channels
        return nnz * d_in + adjs[0].size(0) * d_in * d_out <= num_inputs * d_in * d_out + nnz * d_out

    def pre_aggregate(self, x: torch.Tensor, adjs: list[torch.Tensor]) -> PreAggregated:
        """``A_g x`` for every operator: reuse them while ``x`` and ``adjs`` stay fixed."""
        return PreAggregated([spmm(adj, x) for adj in adjs])

    def forward(self, x: torch.Tensor | PreAggregated, adjs: list[torch.Tensor],
                weights: torch.Tensor | None = None) -> torch.Tensor:
        """Propagate ``x`` through the operators (see the class docstring)."""
        if isinstance(x, PreAggregated):
            mixed = sum(p if weights is None else p * weights[g] for g, p in enumerate(x.parts))
            out = self.lin(F.dropout(mixed, p=self.dropout, training=self.training))
            return out + self.bias if self.bias is not None else out
        x = F.dropout(x, p=self.dropout, training=self.training)
        if self.aggregates_first(x.size(0), adjs):
            out = self.lin(self._aggregate(x, adjs, weights))
        else:
            out = self._aggregate(self.lin(x), adjs, weights)
        return out + self.bias if self.bias is not None else out

    @staticmethod
    def _aggregate(x: torch.Tensor, adjs: list[torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        out = None
        for g, adj in enumerate(adjs):
            y = spmm(adj, x)
            if weights is not None:
                y = y * weights[g]
            out = y if out is None else out + y
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"bias={self.bias is not None}, dropout={self.dropout})")
