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
    its group weights, applies dropout to the mixed aggregate rather than to ``x`` (training config
    ``precompute_first_layer: false`` keeps the reference's dropout on ``x``) and transforms.
    ``row_sums`` are the operators' row sums ``A_g 1`` (for a bias that is aggregated too).
    """

    parts: list[torch.Tensor]
    row_sums: list[torch.Tensor]


class GroupGraphConv(nn.Module):
    r"""A graph convolution over one or more weighted sparse operators.

    .. math::
        X' = \sum_g \alpha_g A_g \, \mathrm{dropout}(X) W + b

    With a single operator and :math:`\alpha = 1` this is GCN's layer; with several it is DGP's
    distance-grouped layer (:math:`\alpha` given by the caller, e.g. a softmax of learned scores).
    With ``aggregate_bias`` the bias is added to every node's transformed features before they are
    aggregated, as DGP's reference code does:

    .. math::
        X' = \sum_g \alpha_g A_g (\mathrm{dropout}(X) W + b)
           = \sum_g \alpha_g A_g \, \mathrm{dropout}(X) W + (\sum_g \alpha_g A_g 1) \, b

    so a node's bias is scaled by the weights of the groups it reads from (the row sums of a
    row-normalised group operator are 1 where the node has neighbours in that group, else 0).
    The product is taken in the cheaper order (aggregate then transform, or the reverse), counted
    from the operator sizes and non-zeros. Operators may be rectangular (a receptive-field
    slice), mapping ``N_in`` input rows to ``N_out`` output rows.

    Args:
        in_channels: Input feature size.
        out_channels: Output feature size.
        bias: Add a learnable bias.
        dropout: Dropout probability on the layer input.
        aggregate_bias: Add the bias before aggregation (it is then aggregated with the
            features); else once, after it.

    Shapes:
        - input: ``x [N_in, in_channels]``, ``adjs``: list of sparse ``[N_out, N_in]``,
          ``weights [len(adjs)]`` or None
        - output: ``[N_out, out_channels]``
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, dropout: float = 0.0,
                 aggregate_bias: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dropout = dropout
        self.aggregate_bias = aggregate_bias
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
        return PreAggregated([spmm(adj, x) for adj in adjs], self._row_sums(adjs, x))

    def forward(self, x: torch.Tensor | PreAggregated, adjs: list[torch.Tensor],
                weights: torch.Tensor | None = None) -> torch.Tensor:
        """Propagate ``x`` through the operators (see the class docstring)."""
        if isinstance(x, PreAggregated):
            mixed = self._mix(x.parts, weights)
            out = self.lin(F.dropout(mixed, p=self.dropout, training=self.training))
            return self._add_bias(out, x.row_sums, weights)
        x = F.dropout(x, p=self.dropout, training=self.training)
        if self.aggregates_first(x.size(0), adjs):
            out = self.lin(self._aggregate(x, adjs, weights))
        else:
            out = self._aggregate(self.lin(x), adjs, weights)
        return self._add_bias(out, adjs, weights)

    def _add_bias(self, out: torch.Tensor, adjs_or_sums: list[torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        """``out + b``, or ``out + (sum_g alpha_g A_g 1) b`` with :attr:`aggregate_bias`."""
        if self.bias is None:
            return out
        if not self.aggregate_bias:
            return out + self.bias
        sums = adjs_or_sums if adjs_or_sums[0].dim() == 1 else self._row_sums(adjs_or_sums, out)
        return out + self._mix(sums, weights)[:, None] * self.bias

    @staticmethod
    def _row_sums(adjs: list[torch.Tensor], like: torch.Tensor) -> list[torch.Tensor]:
        """``A_g 1`` for every operator (``[N_out]`` each)."""
        return [spmm(adj, torch.ones(adj.size(1), 1, dtype=like.dtype, device=like.device)).squeeze(1) for adj in adjs]

    @staticmethod
    def _mix(parts: list[torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        """``sum_g alpha_g parts[g]`` (plain sum without weights)."""
        return sum(p if weights is None else p * weights[g] for g, p in enumerate(parts))

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
        bias = "aggregated" if self.bias is not None and self.aggregate_bias else self.bias is not None
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, bias={bias}, dropout={self.dropout})"
