"""Several propagation models as one: each is trained on its own, a node's row is the mean of theirs.

DGP and SGCN make different errors, and ConSE (:mod:`kgzsl.models.conse`, nothing trained) others
again. On B2's validation rows (seen classes kept out of training) the normalised mean of DGP's and
SGCN's rows is closer to the real rows than either alone (cosine 0.267 against 0.258 for DGP, 3
splits), and with ConSE's rows added closer still (0.278; ``docs/ablation.md``), so the shipped
``dgp+sgcn+conse`` config keeps the mean of the three. A config names an ensemble by joining model
names with ``+`` (:func:`kgzsl.models.build_model`).

Example:
    >>> model = build_model("dgp+sgcn", 384, 1281, dropout=0.5)
    >>> [m.name for m in model.members]
    ['dgp', 'sgcn']
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kgzsl.models.base import PropagationModel
from kgzsl.models.operators import Operator

__all__ = ["Ensemble"]


class Ensemble(PropagationModel):
    """Members trained apart; a node's row is the L2-normalised mean of the members' unit rows.

    Args:
        members: The member models (at least two, same input and output sizes).

    :meth:`operators` gives one list per member; :meth:`predict_rows` and :meth:`forward` take
    that nested list back.
    """

    name = "ensemble"

    def __init__(self, members: list[PropagationModel]) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        sizes = {(m.hparams.get("in_channels"), m.hparams.get("out_channels")) for m in members}
        if len(sizes) != 1:
            raise ValueError(f"the members' input and output sizes differ: {sorted(sizes)}")
        (in_channels, out_channels), = sizes
        super().__init__(in_channels=in_channels, out_channels=out_channels,
                         members=[{"name": m.name, **{k: v for k, v in m.hparams.items()
                                                      if k not in ("in_channels", "out_channels")}}
                                  for m in members])
        self.members = nn.ModuleList(members)
        self.name = "+".join(m.name for m in members)  # type: ignore[misc]  # rebuilt by this name

    @staticmethod
    def combine(rows: list[torch.Tensor]) -> torch.Tensor:
        """The ensemble's rows from its members' unit rows ``[N, D]`` (in member order): their normalised mean."""
        return F.normalize(sum(rows), dim=-1)

    def operators(self, graph: Any) -> list[list[list[Operator]]]:  # type: ignore[override]
        """Per member, its own :meth:`PropagationModel.operators`."""
        return [m.operators(graph) for m in self.members]

    def forward(self, x: torch.Tensor, adjs: list[list[list[torch.Tensor]]]) -> torch.Tensor:  # type: ignore[override]
        """The normalised mean of the members' rows; ``adjs[i]`` holds member ``i``'s operators."""
        return self.combine([m(x, a) for m, a in zip(self.members, adjs)])

    def predict_rows(self, x: torch.Tensor, layers: list[list[list[Operator]]],  # type: ignore[override]
                     rows: torch.Tensor | None = None, chunk_size: int | None = None) -> torch.Tensor:
        """As :meth:`PropagationModel.predict_rows`, member by member, then their normalised mean."""
        return self.combine([m.predict_rows(x, ops, rows, chunk_size) for m, ops in zip(self.members, layers)])

    def prepare_inputs(self, x: torch.Tensor, adjs: Any) -> Any:
        raise TypeError("an ensemble is not trained as one model: train each of its members (kgzsl.training.run)")

    def __repr__(self) -> str:
        return f"Ensemble({', '.join(map(repr, self.members))})"
