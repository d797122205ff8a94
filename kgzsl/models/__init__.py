"""Propagation models: GCNZ, SGCN, DGP, R-GCN and ConSE (nearest seen rows), selected by name; names joined
by ``+`` make an ensemble."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

with warnings.catch_warnings():
    # torch_geometric compiles helpers with torch.jit.script when imported, which this torch deprecates:
    # a FutureWarning about a dependency's internals that nobody using kgzsl can act on
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import torch_geometric  # noqa: F401

from kgzsl.errors import InputError
from kgzsl.models.base import PropagationModel
from kgzsl.models.conse import ConSE
from kgzsl.models.dgp import DGP
from kgzsl.models.ensemble import Ensemble
from kgzsl.models.gcn import GCNZ, SGCN
from kgzsl.models.operators import Operator, restrict
from kgzsl.models.rgcn import RGCN

__all__ = ["PropagationModel", "GCNZ", "SGCN", "DGP", "RGCN", "ConSE", "Ensemble", "MODELS", "build_model", "check_model_name",
           "rebuild_model", "Operator", "restrict"]

MODELS: dict[str, type[PropagationModel]] = {"gcnz": GCNZ, "sgcn": SGCN, "dgp": DGP, "rgcn": RGCN, "conse": ConSE}


def _unknown(name: str) -> InputError:
    return InputError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}, or several joined by + "
                      "(an ensemble, e.g. dgp+sgcn)")


def check_model_name(name: str) -> None:
    """Refuse an unknown model name (one of :data:`MODELS`, or several joined by ``+``) before any work.

    Raises:
        InputError: Naming the models there are.
    """
    for part in str(name).split("+"):
        if part not in MODELS:
            raise _unknown(part)


def build_model(name: str, in_channels: int, out_channels: int, **params: Any) -> PropagationModel:
    """Build a propagation model by name.

    Args:
        name: ``gcnz``, ``sgcn``, ``dgp``, ``rgcn``, ``conse``, or several joined by ``+`` (an
            :class:`~kgzsl.models.ensemble.Ensemble`, e.g. ``dgp+sgcn``: each member takes the
            hyper-parameters it has, e.g. ``num_groups`` goes to DGP only).
        in_channels: Node feature size.
        out_channels: Classifier row size.
        **params: Model hyper-parameters; ``None`` values take the model's default.

    Example:
        >>> model = build_model("dgp", 384, 1281, dropout=0.5)

    Raises:
        InputError: For an unknown model name or hyper-parameter.
    """
    params = {k: v for k, v in params.items() if v is not None}
    if "+" in name:
        parts = name.split("+")
        for part in parts:
            if part not in MODELS:
                raise _unknown(part)
        taken = {part: set(inspect.signature(MODELS[part]).parameters) for part in parts}
        unused = sorted(set(params) - set().union(*taken.values()))
        if unused:
            raise InputError(f"bad hyper-parameters for {name}: no member takes {', '.join(unused)}")
        return Ensemble([build_model(part, in_channels, out_channels, **{k: v for k, v in params.items()
                                                                          if k in taken[part]}) for part in parts])
    if name not in MODELS:
        raise _unknown(name)
    cls = MODELS[name]
    unused = sorted(set(params) - set(inspect.signature(cls).parameters))
    if unused:  # e.g. a dgp config's num_groups with model.name=rgcn
        raise InputError(f"bad hyper-parameters for {name}: it takes no {', '.join(unused)} (set by the config); "
                         f"override {' '.join(f'model.{k}=null' for k in unused)}, or start from a config "
                         f"written for {name}")
    try:
        return cls(in_channels, out_channels, **params)
    except TypeError as exc:
        raise InputError(f"bad hyper-parameters for {name}: {exc}") from None


def rebuild_model(name: str, hparams: dict[str, Any]) -> PropagationModel:
    """Rebuild a saved model from its name and recorded ``hparams`` (``in_channels`` and ``out_channels`` included).

    Hyper-parameters a model gained after the save take the value that reproduces the saved
    model (the class's ``LEGACY_HPARAMS``), not today's default. An ensemble's ``hparams`` list its
    members' own.
    """
    if "+" in name:
        sizes = {"in_channels": hparams["in_channels"], "out_channels": hparams["out_channels"]}
        return Ensemble([rebuild_model(m["name"], {**sizes, **{k: v for k, v in m.items() if k != "name"}})
                         for m in hparams["members"]])
    if name not in MODELS:
        raise _unknown(name)
    params = {**MODELS[name].LEGACY_HPARAMS, **hparams}
    return build_model(name, params.pop("in_channels"), params.pop("out_channels"), **params)
