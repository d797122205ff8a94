"""Propagation models: GCNZ, SGCN, DGP and R-GCN, selected by name."""

from __future__ import annotations

from typing import Any

from kgzsl.errors import InputError
from kgzsl.models.base import PropagationModel
from kgzsl.models.dgp import DGP
from kgzsl.models.gcn import GCNZ, SGCN
from kgzsl.models.operators import Operator, restrict
from kgzsl.models.rgcn import RGCN

__all__ = ["PropagationModel", "GCNZ", "SGCN", "DGP", "RGCN", "MODELS", "build_model", "rebuild_model", "Operator", "restrict"]

MODELS: dict[str, type[PropagationModel]] = {"gcnz": GCNZ, "sgcn": SGCN, "dgp": DGP, "rgcn": RGCN}


def build_model(name: str, in_channels: int, out_channels: int, **params: Any) -> PropagationModel:
    """Build a propagation model by name.

    Args:
        name: ``gcnz``, ``sgcn`` or ``dgp``.
        in_channels: Node feature size.
        out_channels: Classifier row size.
        **params: Model hyper-parameters; ``None`` values take the model's default.

    Example:
        >>> model = build_model("dgp", 384, 1281, dropout=0.5)

    Raises:
        ValueError: For an unknown model name or hyper-parameter.
    """
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    params = {k: v for k, v in params.items() if v is not None}
    try:
        return cls(in_channels, out_channels, **params)
    except TypeError as exc:
        raise InputError(f"bad hyper-parameters for {name}: {exc}") from None


def rebuild_model(name: str, hparams: dict[str, Any]) -> PropagationModel:
    """Rebuild a saved model from its name and recorded ``hparams`` (``in_channels`` and ``out_channels`` included).

    Hyper-parameters a model gained after the save take the value that reproduces the saved
    model (the class's ``LEGACY_HPARAMS``), not today's default.
    """
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    params = {**MODELS[name].LEGACY_HPARAMS, **hparams}
    return build_model(name, params.pop("in_channels"), params.pop("out_channels"), **params)
