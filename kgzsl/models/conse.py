"""ConSE in weight space: a node's row is the mean of the real rows of the seen classes nearest in text.

ConSE (Norouzi et al. 2014) embeds an image as the similarity-weighted mean of the embeddings of
the classes the CNN finds most likely. Turned around, into the CNN's weight space: a node's row is
the weighted mean of the real rows of the ``neighbours`` seen classes whose node features (text)
are closest to its own: weighted by their cosine similarity (negative ones weigh nothing), or with
a ``temperature`` by the softmax of the similarities over it, so that the nearest weigh the most.
The shipped configs use 50 neighbours at temperature 0.1: on B2's validation rows the ConSE rows
alone reach cosine 0.273 against 0.242 for 10 similarity-weighted ones (``docs/ablation.md``).

It learns nothing, so it is not trained: :func:`kgzsl.training.fit.fit` makes it
:meth:`~ConSE.remember` the training rows and their node features, so that its validation cosine
is honest, and :func:`kgzsl.training.fit.keep_every_row` then gives it the validation rows too
(all kept in the model's state, so a saved run rebuilds it). It makes other errors than a graph
network: as a member of an ensemble (``model.name: dgp+sgcn+conse``) it brings B2's validation
rows closer to the real ones (cosine 0.286 against 0.267 for ``dgp+sgcn``, 3 splits;
``docs/ablation.md``).

Example:
    >>> model = ConSE(384, 1281, neighbours=50, temperature=0.1)
    >>> model.remember(x[train_nodes], unit_rows)
    >>> rows = model.predict_rows(x, model.operators(graph))   # [N, 1281], unit norm
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from kgzsl.models.base import PropagationModel
from kgzsl.models.operators import Operator

__all__ = ["ConSE", "neighbour_rows"]

_CHUNK = 4096  # query nodes at a time (bounds the [chunk, memory] similarity matrix)


def neighbour_rows(queries: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor, top: int = 10,
                   temperature: float | None = None) -> torch.Tensor:
    """``[Q, D]`` weighted means of ``rows`` (``[K, D]``) over each query's ``top`` nearest keys (cosine).

    Args:
        queries: ``[Q, F]`` features of the nodes whose rows are wanted.
        keys: ``[K, F]`` features of the nodes with known rows.
        rows: ``[K, D]`` their rows.
        top: Neighbours per query (at most K).
        temperature: None: each neighbour weighs its cosine similarity (negative ones nothing);
            a temperature ``t``: the softmax of the similarities divided by ``t``, so that the
            nearest neighbours weigh the most.
    """
    keys = F.normalize(keys.float(), dim=1)
    out = []
    for part in queries.float().split(_CHUNK):
        similarity, idx = (F.normalize(part, dim=1) @ keys.T).topk(min(top, keys.size(0)), dim=1)
        weight = similarity.clamp(min=0) + 1e-8 if temperature is None else torch.softmax(similarity / temperature, 1)
        out.append((weight.unsqueeze(-1) * rows[idx].float()).sum(1) / weight.sum(1, keepdim=True))
    return torch.cat(out) if out else rows.new_zeros(0, rows.size(1))


class ConSE(PropagationModel):
    """Rows of the nearest seen classes in text; nothing to train (see the module docstring).

    Args:
        in_channels: Node feature size.
        out_channels: Row size.
        neighbours: Seen classes averaged per node.
        temperature: None: weights are the cosine similarities (Norouzi et al.'s weighting, turned
            into weight space); a temperature: the softmax of the similarities over it
            (:func:`neighbour_rows`).
    """

    name = "conse"
    trainable: ClassVar[bool] = False
    #: runs saved before ``temperature`` existed weighed by similarity
    LEGACY_HPARAMS: ClassVar[dict[str, Any]] = {"temperature": None}

    def __init__(self, in_channels: int, out_channels: int, neighbours: int = 10,
                 temperature: float | None = None) -> None:
        if neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {neighbours}")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be > 0 (or None), got {temperature}")
        super().__init__(in_channels=in_channels, out_channels=out_channels, neighbours=neighbours,
                         temperature=temperature)
        self.neighbours, self.temperature = neighbours, temperature
        self.register_buffer("keys", torch.zeros(0, in_channels))
        self.register_buffer("values", torch.zeros(0, out_channels))

    def remember(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Keep the node features ``[K, in_channels]`` and unit rows ``[K, out_channels]`` of the training classes."""
        if keys.ndim != 2 or values.ndim != 2 or keys.size(0) != values.size(0) or keys.size(0) == 0 \
                or keys.size(1) != self.hparams["in_channels"] or values.size(1) != self.hparams["out_channels"]:
            raise ValueError(f"expected [K, {self.hparams['in_channels']}] features and [K, "
                             f"{self.hparams['out_channels']}] rows (K >= 1), got {tuple(keys.shape)} and "
                             f"{tuple(values.shape)}")
        self.keys = keys.detach().float().clone().to(self.keys.device)
        self.values = values.detach().float().clone().to(self.values.device)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("keys", "values"):  # the memory takes the saved size
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def operators(self, graph: Any) -> list[list[Operator]]:
        """None: a node's row depends on its own features only."""
        return []

    def forward(self, x: torch.Tensor, adjs: list[list[torch.Tensor]]) -> torch.Tensor:
        """``[N, out_channels]`` unit rows of the nodes with features ``x``.

        Raises:
            RuntimeError: If nothing was :meth:`remember`\\ ed.
        """
        if self.keys.size(0) == 0:
            raise RuntimeError("a ConSE model has no rows to average until it remembers some (kgzsl.training.fit)")
        return F.normalize(neighbour_rows(x, self.keys, self.values, self.neighbours, self.temperature), dim=-1)

    def predict_rows(self, x: torch.Tensor, layers: list[list[Operator]],
                     rows: torch.Tensor | None = None, chunk_size: int | None = None) -> torch.Tensor:
        """As :meth:`PropagationModel.predict_rows` (``layers`` is unused; rows are computed in chunks anyway)."""
        return self(x if rows is None else x[rows.to(x.device)], [])

    def __repr__(self) -> str:
        weighting = "" if self.temperature is None else f", temperature={self.temperature}"
        return (f"ConSE({self.hparams['in_channels']} → {self.hparams['out_channels']}, "
                f"neighbours={self.neighbours}{weighting}, remembered={self.keys.size(0)})")
