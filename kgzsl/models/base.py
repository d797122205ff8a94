"""The interface every propagation model implements."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kgzsl.models.layers import GroupGraphConv
from kgzsl.models.operators import Operator, restrict

__all__ = ["PropagationModel"]


class PropagationModel(nn.Module):
    """Maps node input features to classifier rows by propagating over a graph.

    Subclasses build ``self.convs`` (the graph layers) and ``self.negative_slope``, and define
    :meth:`operators` (the graph matrices each layer uses, built once per graph); the shared
    :meth:`forward` runs the layers (features + operators → L2-normalised rows). Keeping the graph out of the
    module lets the same weights run on the full graph, on the receptive field of the seen rows
    during training, or on an extended graph.
    """

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = True
    """False for a model with no weights to learn: training makes it remember the training rows instead
    (and every seen row once validation is done: :func:`kgzsl.training.fit.keep_every_row`)."""
    LEGACY_HPARAMS: ClassVar[dict[str, Any]] = {}
    """Values of hyper-parameters added after a model was first saved, for saved models that lack them."""

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.hparams = hparams

    def operators(self, graph: Any) -> list[list[Operator]]:
        """Per layer, the full-graph operators it propagates with."""
        raise NotImplementedError

    def operator_weights(self) -> list[torch.Tensor | None] | None:
        """Per layer, a weight for each of its operators (DGP's group weights); None: all count fully."""
        return None

    def forward(self, x: torch.Tensor, adjs: list[list[torch.Tensor]]) -> torch.Tensor:
        """Apply the layers ``self.convs`` with LeakyReLU between them; return L2-normalised rows.

        Layer ``l`` is called as ``conv(x, adjs[l])``, or ``conv(x, adjs[l], weights[l])`` with
        :meth:`operator_weights`; ``adjs[l]`` holds the operators :meth:`operators` gives layer ``l``.

        Shapes:
            ``x [N_in, in_channels]`` → ``[N_out, out_channels]``, rows of unit norm.
        """
        weights = self.operator_weights()
        for i, conv in enumerate(self.convs):
            x = conv(x, adjs[i]) if weights is None else conv(x, adjs[i], weights[i])
            if i < len(self.convs) - 1:
                x = F.leaky_relu(x, self.negative_slope)
        return F.normalize(x, dim=-1)

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

    def extra_repr_fields(self) -> list[str]:
        """``name=value`` items a model adds to its ``repr`` between the layer sizes and the dropout."""
        return []

    def __repr__(self) -> str:
        sizes = [self.convs[0].in_channels] + [c.out_channels for c in self.convs]
        fields = [" → ".join(map(str, sizes)), *self.extra_repr_fields(), f"dropout={self.convs[0].dropout}"]
        return f"{type(self).__name__}({', '.join(fields)})"

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
