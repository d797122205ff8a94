"""Device selection: ``"auto"`` picks CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from kgzsl.errors import InputError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device spec into a :class:`torch.device`.

    Args:
        device: ``"auto"`` (CUDA if available, else CPU), or anything ``torch.device`` accepts.

    Raises:
        ValueError: If a CUDA device is asked for and none is available.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
    return dev
