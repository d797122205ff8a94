"""Normalised adjacency operators, and their restriction to the receptive field of some rows.

A propagation model is a stack of layers; layer ``l`` mixes node states with one or more sparse
operators ``A_l,g`` (one per edge group). An :class:`Operator` is such a matrix in COO form. To
train on the seen rows only, :func:`restrict` slices each layer's operators to the rows that
layer must produce and the columns those rows read, walking back from the output layer; the
sliced, rectangular operators give exactly the same rows as the full-graph computation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch_geometric.utils import add_remaining_self_loops, coalesce, scatter, to_undirected
from torch_geometric.nn.conv.gcn_conv import gcn_norm

__all__ = ["Operator", "symmetric_adjacency", "row_normalized", "restrict"]


@dataclass
class Operator:
    """A sparse ``[num_rows, num_cols]`` matrix: entry ``(row[k], col[k]) = value[k]``.

    Row ``i`` of ``A @ X`` is the weighted sum of the rows of ``X`` that node ``i`` reads.
    """

    row: torch.Tensor
    col: torch.Tensor
    value: torch.Tensor
    shape: tuple[int, int]

    def to_torch(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """As a ``torch.sparse_csr`` tensor on ``device`` (fast CPU/GPU ``spmm``)."""
        coo = torch.sparse_coo_tensor(torch.stack([self.row, self.col]), self.value, self.shape,
                                      check_invariants=False)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR x dense is all we use
            warnings.simplefilter("ignore", UserWarning)
            return coo.coalesce().to_sparse_csr().to(device)

    def to_dense(self) -> torch.Tensor:
        """As a dense matrix (tests, small graphs)."""
        out = torch.zeros(self.shape)
        out.index_put_((self.row, self.col), self.value, accumulate=True)
        return out

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.row.numel())


def symmetric_adjacency(edge_index: torch.Tensor, num_nodes: int) -> Operator:
    """GCN's ``D^-1/2 (A + I) D^-1/2`` over the undirected version of ``edge_index``."""
    ei = to_undirected(edge_index, num_nodes=num_nodes)
    ei, w = gcn_norm(ei, None, num_nodes, improved=False, add_self_loops=True)
    # PyG messages flow source (row 0) -> target (row 1): target i reads source j
    return Operator(row=ei[1], col=ei[0], value=w, shape=(num_nodes, num_nodes))


def row_normalized(readers: torch.Tensor, sources: torch.Tensor, num_nodes: int,
                   self_loops: bool = False) -> Operator:
    """``D^-1 A``: each reader node takes the mean of the nodes it reads.

    Args:
        readers: ``[E]`` index of the node that receives.
        sources: ``[E]`` index of the node that is read.
        num_nodes: Number of nodes.
        self_loops: Add ``(i, i)`` for every node first (mean over the neighbourhood and itself).
    """
    ei = torch.stack([sources, readers])
    if self_loops:
        ei, _ = add_remaining_self_loops(ei, num_nodes=num_nodes)
    ei = coalesce(ei, num_nodes=num_nodes)
    ones = torch.ones(ei.size(1))
    deg = scatter(ones, ei[1], dim=0, dim_size=num_nodes, reduce="sum")
    value = ones / deg[ei[1]]
    return Operator(row=ei[1], col=ei[0], value=value, shape=(num_nodes, num_nodes))


def restrict(layers: list[list[Operator]], rows: torch.Tensor) -> tuple[list[list[Operator]], torch.Tensor]:
    """Slice a layer stack to the receptive field of ``rows``.

    Args:
        layers: Per layer, the list of full ``[N, N]`` operators (one per edge group).
        rows: Global indices of the output rows wanted, in the wanted order.

    Returns:
        ``(sliced, input_rows)``: per layer the rectangular operators (layer ``l`` maps the rows
        of layer ``l-1`` to its own rows), and the global indices of the input rows the first
        layer reads. Feed ``x[input_rows]`` through the sliced stack to get ``rows`` in order.
    """
    if not layers:
        return [], rows
    num_nodes = layers[0][0].shape[1]
    wanted = rows.long()
    sliced: list[list[Operator]] = []
    for ops in reversed(layers):
        pos = torch.full((num_nodes,), -1, dtype=torch.long)
        pos[wanted] = torch.arange(wanted.numel())
        keep = [pos[op.row] >= 0 for op in ops]
        cols = torch.unique(torch.cat([op.col[k] for op, k in zip(ops, keep)]))
        col_pos = torch.full((num_nodes,), -1, dtype=torch.long)
        col_pos[cols] = torch.arange(cols.numel())
        shape = (wanted.numel(), cols.numel())
        sliced.append([Operator(pos[op.row[k]], col_pos[op.col[k]], op.value[k], shape) for op, k in zip(ops, keep)])
        wanted = cols
    return sliced[::-1], wanted
