"""R-GCN: relational graph convolution with basis decomposition (Schlichtkrull et al., ESWC 2018).

Each layer computes, for node ``i``,

.. math::
    h'_i = W_0 h_i + \\sum_{r} \\sum_{j \\in N_r(i)} \\frac{w_{ij}}{\\sum_{j' \\in N_r(i)} w_{ij'}} W_r h_j + b,
    \\qquad W_r = \\sum_{b=1}^{B} a_{rb} V_b,

over every relation ``r`` of the graph *and its inverse* (``IsA`` child → parent and parent →
child are two relations), with edge weights ``w`` (ConceptNet's; 1 for WordNet).

Why not ``torch_geometric.nn.RGCNConv``: with basis decomposition it materialises every
``W_r`` (``2R × in × out``: ~1.1 GB per 2048 × 2049 layer for ConceptNet's ~34 relations and
their inverses), it has no edge weights, and it takes ``edge_index``/``edge_type`` rather than the
rectangular operators that :func:`kgzsl.models.operators.restrict` slices for training. Here
each relation-direction is one row-normalised :class:`Operator`, and :class:`_BasisAggregate`
forms ``M_b = sum_r a_rb A_r H`` (``B × N × in``) without keeping the ``2R`` products ``A_r H``
for the backward pass (it recomputes them), so memory does not grow with the number of relations.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.utils import coalesce, scatter, spmm

from kgzsl.models.base import PropagationModel
from kgzsl.models.operators import Operator

__all__ = ["RGCN", "RelationalGraphConv", "weighted_row_normalized"]


def weighted_row_normalized(readers: torch.Tensor, sources: torch.Tensor, weight: torch.Tensor,
                            num_nodes: int) -> Operator:
    """``D^-1 A`` with edge weights: each reader takes the weighted mean of the nodes it reads.

    Parallel entries are summed first. Readers without entries get an empty row.
    """
    ei, w = coalesce(torch.stack([sources, readers]), weight.float(), num_nodes=num_nodes, reduce="sum")
    deg = scatter(w, ei[1], dim=0, dim_size=num_nodes, reduce="sum")
    return Operator(row=ei[1], col=ei[0], value=w / deg[ei[1]], shape=(num_nodes, num_nodes))


class _BasisAggregate(torch.autograd.Function):
    """``M[b] = sum_k comp[k, b] * (A_k @ x)``; the backward pass recomputes ``A_k @ x``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, comp: torch.Tensor, *adjs: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(comp.size(1), adjs[0].size(0) * x.size(1))
        for k, adj in enumerate(adjs):
            out.addr_(comp[k], spmm(adj, x).reshape(-1))  # out[b] += comp[k, b] * (A_k x), in place
        ctx.save_for_backward(x, comp)
        ctx.adjs = adjs
        return out.view(comp.size(1), adjs[0].size(0), x.size(1))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, comp = ctx.saved_tensors
        g = grad.reshape(comp.size(1), -1)
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        grad_comp = torch.empty_like(comp)
        for k, adj in enumerate(ctx.adjs):
            grad_comp[k] = g @ spmm(adj, x).reshape(-1)
            if grad_x is not None:
                grad_x += adj.t() @ (comp[k] @ g).view(adj.size(0), x.size(1))  # CSC @ dense: A_k^T G_k
        return (grad_x, grad_comp, *([None] * len(ctx.adjs)))


class RelationalGraphConv(nn.Module):
    """One R-GCN layer over a self operator and ``num_operators`` relation-direction operators.

    Args:
        in_channels: Input feature size.
        out_channels: Output feature size.
        num_operators: Relation-direction operators (``2R``); may be set later with
            :meth:`set_num_operators` (the coefficients are created then).
        num_bases: Basis matrices ``V_b`` shared by all relations.
        bias: Learnable bias.
        dropout: Dropout probability on the layer input.

    Shapes:
        - input: ``x [N_in, in_channels]``; ``adjs``: ``1 + num_operators`` sparse ``[N_out, N_in]``,
          the first selecting each output node's own row (self-connection).
        - output: ``[N_out, out_channels]``
    """

    def __init__(self, in_channels: int, out_channels: int, num_operators: int | None, num_bases: int = 4,
                 bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if num_bases < 1:
            raise ValueError(f"num_bases must be >= 1, got {num_bases}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_bases, self.dropout = num_bases, dropout
        self.root = Linear(in_channels, out_channels, bias=False, weight_initializer="glorot")
        self.basis = nn.Parameter(torch.empty(num_bases, in_channels, out_channels))
        self.comp: nn.Parameter | None = None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()
        if num_operators is not None:
            self.set_num_operators(num_operators)

    def set_num_operators(self, num_operators: int) -> None:
        """Create the ``[num_operators, num_bases]`` basis coefficients (Glorot-initialised)."""
        self.comp = nn.Parameter(torch.empty(num_operators, self.num_bases, device=self.basis.device,
                                             dtype=self.basis.dtype))
        nn.init.xavier_uniform_(self.comp)

    def reset_parameters(self) -> None:
        """Glorot weights and coefficients, zero bias."""
        self.root.reset_parameters()
        for b in range(self.num_bases):
            nn.init.xavier_uniform_(self.basis.data[b])
        if self.comp is not None:
            nn.init.xavier_uniform_(self.comp)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, adjs: list[torch.Tensor]) -> torch.Tensor:
        """Propagate ``x`` (see the class docstring)."""
        if self.comp is None or len(adjs) != 1 + self.comp.size(0):
            raise ValueError(f"expected 1 + {None if self.comp is None else self.comp.size(0)} operators, "
                             f"got {len(adjs)}; build them with RGCN.operators(graph)")
        x = F.dropout(x, p=self.dropout, training=self.training)
        out = self.root(spmm(adjs[0], x))
        active = [k for k, adj in enumerate(adjs[1:]) if adj._nnz()]
        if active:
            m = _BasisAggregate.apply(x, self.comp[active], *[adjs[1 + k] for k in active])
            out = out + m.permute(1, 0, 2).reshape(out.size(0), -1) @ self.basis.reshape(-1, self.out_channels)
        return out + self.bias if self.bias is not None else out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, bases={self.num_bases}, "
                f"operators={None if self.comp is None else self.comp.size(0)}, dropout={self.dropout})")


class RGCN(PropagationModel):
    """R-GCN over the graph's typed edges: works on WordNet (hypernym, instance_hypernym) and ConceptNet.

    Layer ``l`` reads, per relation ``r`` of :attr:`relations`, two row-normalised operators (a
    node reads the nodes it points to, then the nodes pointing to it) plus its own row, with the
    weights of :class:`RelationalGraphConv`; LeakyReLU between layers, L2-normalised output.

    The relation vocabulary is fixed by ``relations`` or, if None, by the first graph passed to
    :meth:`operators` (call it before building an optimiser; :func:`kgzsl.training.fit.fit` does). It is
    then recorded in :attr:`hparams`, so ``RGCN(**hparams)`` rebuilds a saved model; a later graph
    may use a subset of the relations, not a new one.

    Args:
        in_channels: Node feature size.
        out_channels: Classifier row size.
        hidden_channels: Hidden sizes; ``(2048,)`` gives two layers.
        num_bases: Basis matrices per layer (``2 * len(relations)`` for no sharing).
        dropout: Dropout on each layer's input (0.5).
        negative_slope: LeakyReLU slope (0.2).
        bias: Layer biases.
        relations: Relation names, or None to take the first graph's.
        edge_weights: Weighted means (ConceptNet weights) instead of plain means.
    """

    name = "rgcn"

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: Sequence[int] = (2048,),
                 num_bases: int = 4, dropout: float = 0.5, negative_slope: float = 0.2, bias: bool = True,
                 relations: Sequence[str] | None = None, edge_weights: bool = True) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, hidden_channels=list(hidden_channels),
                         num_bases=num_bases, dropout=dropout, negative_slope=negative_slope, bias=bias,
                         relations=list(relations) if relations is not None else None, edge_weights=edge_weights)
        self.relations = list(relations) if relations is not None else None
        num_ops = 2 * len(self.relations) if self.relations is not None else None
        sizes = [in_channels, *hidden_channels, out_channels]
        self.convs = nn.ModuleList(RelationalGraphConv(a, b, num_ops, num_bases, bias=bias, dropout=dropout)
                                   for a, b in zip(sizes, sizes[1:]))
        self.negative_slope = negative_slope
        self.edge_weights = edge_weights

    def operators(self, graph: Any) -> list[list[Operator]]:
        """Per layer: the self operator, then per relation its forward and inverse operators.

        Raises:
            ValueError: If the graph has a relation the model was not built for.
        """
        if self.relations is None:
            self.relations = list(graph.relations)
            self.hparams["relations"] = list(self.relations)
            for conv in self.convs:
                conv.set_num_operators(2 * len(self.relations))
        unknown = [r for r in graph.relations if r not in self.relations]
        if unknown:
            raise ValueError(f"graph relations {unknown} are unknown to this model (built for {self.relations})")
        n = graph.num_nodes
        index, types = graph.edge_index, graph.edge_type
        weight = graph.edge_weight if self.edge_weights else torch.ones(index.size(1))
        loops = torch.arange(n)
        ops = [Operator(row=loops, col=loops, value=torch.ones(n), shape=(n, n))]
        graph_rel = {name: i for i, name in enumerate(graph.relations)}
        for name in self.relations:
            mask = types == graph_rel.get(name, -1)
            src, dst, w = index[0, mask], index[1, mask], weight[mask]
            ops.append(weighted_row_normalized(src, dst, w, n))  # source reads target (child reads parent)
            ops.append(weighted_row_normalized(dst, src, w, n))  # target reads source (parent reads child)
        return [ops for _ in self.convs]

    def extra_repr_fields(self) -> list[str]:
        rels = "unbound" if self.relations is None else len(self.relations)
        return [f"relations={rels}", f"bases={self.convs[0].num_bases}"]
