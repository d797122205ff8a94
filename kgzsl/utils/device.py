"""Device selection: ``"auto"`` picks CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from kgzsl.errors import InputError

__all__ = ["resolve_device"]

_KINDS = "'auto', 'cpu' or 'cuda' (or 'cuda:N')"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a device spec into a :class:`torch.device` that this machine has.

    Args:
        device: ``"auto"`` (CUDA if available, else CPU), or anything ``torch.device`` accepts, in
            any case (``"CPU"``); an integer as Hugging Face's pipelines take it (``-1`` the CPU,
            ``0`` the first GPU).

    Raises:
        InputError: If the spec is no device (``"gpu"``), or names one this machine or this torch
            build lacks (``"cuda"`` without a GPU, ``"cuda:3"`` with one, ``"mps"`` off a Mac).
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, int) and not isinstance(device, bool) and device == -1:  # Hugging Face's CPU
        return torch.device("cpu")
    elif device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
        except (RuntimeError, TypeError, ValueError):
            raise InputError(f"unknown device {device!r}; use {_KINDS}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
    if dev.type != "cpu":
        try:  # a device type torch knows but this build or machine lacks (mps, xpu, cuda:N past the last GPU)
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError, ValueError) as exc:
            why = (str(exc).strip() or type(exc).__name__).splitlines()[0].split(". ")[0]
            why = why if len(why) <= 100 else why[:97] + "..."
            raise InputError(f"device {device!r} is not available here ({why}); use {_KINDS}") from None
    return dev
