"""The interface every propagation model implements."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kgzsl.models.layers import GroupGraphConv
from kgzsl.models.operators import Operator, restrict

__all__ = ["PropagationModel", "run_layers"]


class PropagationModel(nn.Module):
    """Maps node input features to classifier rows by propagating over a graph.

    Subclasses define :meth:`operators` (the graph matrices each layer uses, built once per graph)
    and :meth:`forward` (features + operators → L2-normalised rows). Keeping the graph out of the
    module lets the same weights run on the full graph, on the receptive field of the seen rows
    during training, or on an extended graph.
    """

    name: ClassVar[str] = ""

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.hparams = hparams

    def operators(self, graph: Any) -> list[list[Operator]]:
        """Per layer, the full-graph operators it propagates with."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, adjs: list[list[torch.Tensor]]) -> torch.Tensor:  # noqa: D102
        raise NotImplementedError

    def prepare_inputs(self, x: torch.Tensor, adjs: list[list[torch.Tensor]]) -> Any:
        """Input for repeated training steps on fixed ``x`` and ``adjs``.

        When the first layer aggregates before it transforms, its aggregations of the fixed input
        features do not depend on any weight: they are computed here once
        (:class:`~kgzsl.models.layers.PreAggregated`) instead of every epoch. Dropout then acts
        on the aggregate rather than on the raw features. In eval mode the rows are the same.
        """
        first = self.convs[0] if hasattr(self, "convs") else None
        if isinstance(first, GroupGraphConv) and first.aggregates_first(x.size(0), adjs[0]):
            with torch.no_grad():
                return first.pre_aggregate(x, adjs[0])
        return x

    def predict_rows(self, x: torch.Tensor, layers: list[list[Operator]],
                     rows: torch.Tensor | None = None, chunk_size: int | None = None) -> torch.Tensor:
        """Compute output rows, on the full graph or only for ``rows``.

        Args:
            x: ``[N, in_channels]`` node features of the whole graph.
            layers: Result of :meth:`operators`.
            rows: Optional global indices of the rows wanted.
            chunk_size: Compute the rows in chunks of this many, each over its own receptive
                field: same rows, less memory at once (some shared work is repeated).

        Returns:
            ``[N, out]`` or ``[len(rows), out]`` L2-normalised rows.
        """
        if chunk_size is not None:
            wanted = torch.arange(x.size(0)) if rows is None else rows
            return torch.cat([self.predict_rows(x, layers, part) for part in wanted.split(chunk_size)])
        if rows is not None:
            layers, inputs = restrict(layers, rows)
            x = x[inputs.to(x.device)]
        device = x.device
        return self(x, [[op.to_torch(device) for op in ops] for ops in layers])


def run_layers(convs: nn.ModuleList, x: torch.Tensor, adjs: list[list[torch.Tensor]], negative_slope: float,
               weights: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    """Apply graph layers with LeakyReLU between them; return L2-normalised rows.

    Args:
        convs: The layers; layer ``l`` is called as ``conv(x, adjs[l])`` or ``conv(x, adjs[l], weights[l])``.
        x: Input rows.
        adjs: Per layer, its operators.
        negative_slope: LeakyReLU slope.
        weights: Optional per-layer operator weights (DGP's group weights).
    """
    for i, conv in enumerate(convs):
        x = conv(x, adjs[i]) if weights is None else conv(x, adjs[i], weights[i])
        if i < len(convs) - 1:
            x = F.leaky_relu(x, negative_slope)
    return F.normalize(x, dim=-1)
