"""Crash-safe file writing and safe tensor files.

Every artifact kgzsl writes (graphs, feature caches, checkpoints, predicted rows) goes through
:func:`atomic_path`: the content is written to a temporary file in the same directory and then
renamed over the target, so an interrupted process leaves either the old file or the new one,
never half of one. Tensors are stored as safetensors, which hold no code.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

__all__ = ["atomic_path", "write_text", "write_json", "save_tensors", "load_tensors"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Args:
        path: Final location of the file. Its parent directory is created if missing.

    Yields:
        A temporary path in the same directory to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Save named tensors as a safetensors file, atomically.

    Args:
        path: Target ``.safetensors`` file.
        tensors: Name to tensor; tensors are made contiguous and moved to the CPU.
        metadata: Optional string-to-string metadata stored in the header.
    """
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file (no code can run while loading).

    Raises:
        FileNotFoundError: If ``path`` does not exist, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tensor file not found: {path}")
    return load_file(str(path), device=str(device))
