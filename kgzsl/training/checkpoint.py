"""Where a fine-tune of a run keeps its files, and its checkpoint format (see :mod:`kgzsl.tasks.finetune`).

Split from the training loop so that :class:`kgzsl.inference.classifier.ZeroShotClassifier` can find a
finished fine-tune without importing the training stack. Checkpoints are safetensors: tensors
(current and best weights, momentum buffers) plus JSON in the header; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kgzsl.utils.io import (TensorFileError, load_tensors, optimizer_from_tensors, optimizer_to_tensors,
                      read_tensor_metadata, save_tensors)

__all__ = ["FINETUNE_DIR", "WEIGHTS_FILE", "SUMMARY_FILE", "CHECKPOINT_FILE", "finetuned_weights",
           "save_checkpoint", "load_checkpoint", "digest"]

logger = logging.getLogger(__name__)

FINETUNE_DIR, WEIGHTS_FILE, SUMMARY_FILE, CHECKPOINT_FILE = ("finetune", "backbone.safetensors", "finetune.json",
                                                             "checkpoint.safetensors")
CHECKPOINT_FORMAT = 1


def finetuned_weights(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """``(weights file, finetune.json)`` of a finished fine-tune of the run, else None."""
    folder = Path(run_dir) / FINETUNE_DIR
    if not (folder / SUMMARY_FILE).is_file():
        return None
    try:
        info = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("ignoring the unreadable %s (%s); using the original backbone", folder / SUMMARY_FILE, exc)
        return None
    if not isinstance(info, dict) or info.get("finished") is not True:
        return None
    if not (folder / WEIGHTS_FILE).is_file():
        logger.warning("%s says finished but %s is missing; using the original backbone", folder / SUMMARY_FILE,
                       folder / WEIGHTS_FILE)
        return None
    return folder / WEIGHTS_FILE, info


def digest(obj: Any) -> str:
    """Short sha256 of tensors (shape, dtype, bytes) or JSON values, in order."""
    h = hashlib.sha256()
    for t in obj.values() if isinstance(obj, dict) else [obj]:
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{tuple(t.shape)}|{t.dtype}|".encode() + t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(json.dumps(t, default=str).encode())
    return h.hexdigest()[:24]


def save_checkpoint(path: Path, body: nn.Module, best: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    state: dict[str, Any]) -> None:
    """Write the current and best weights, the optimizer state and ``state`` (JSON) atomically."""
    tensors = {f"model/{k}": v for k, v in body.state_dict().items()}
    tensors.update({f"best/{k}": v for k, v in best.items()})
    optim_tensors, optim_header = optimizer_to_tensors(optimizer)
    tensors.update(optim_tensors)
    state = {**state, "format": CHECKPOINT_FORMAT, **optim_header}
    save_tensors(path, {k: v.detach().clone() for k, v in tensors.items()},
                 metadata={"kgzsl_finetune_checkpoint": str(CHECKPOINT_FORMAT), "state": json.dumps(state)})


def load_checkpoint(path: Path, fingerprint: dict[str, Any], body: nn.Module, optimizer: torch.optim.Optimizer,
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Check ``path`` against ``fingerprint``, restore body and optimizer; return its state and best weights.

    Raises:
        kgzsl.training.fit.CheckpointError: If the file is not such a checkpoint, was written for other
            settings, or cannot be restored.
    """
    from kgzsl.training.fit import CheckpointError  # the training stack is only needed on this path

    fix = f"delete {path} to fine-tune from the start, or resume with the settings and data it was written with"
    try:
        meta = read_tensor_metadata(path)
        state = json.loads(meta["state"]) if meta.get("kgzsl_finetune_checkpoint") == str(CHECKPOINT_FORMAT) else None
        saved = state["fingerprint"] if isinstance(state, dict) else None
    except TensorFileError as exc:  # a pickle, a truncated file ...: refused, never unpickled
        raise CheckpointError(f"{exc}; {fix}") from None
    except (KeyError, TypeError, ValueError):
        saved = None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is not a kgzsl fine-tuning checkpoint of format {CHECKPOINT_FORMAT}; {fix}")
    differs = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if differs:
        why = "; ".join(f"{k} (checkpoint {saved.get(k)!r}, now {fingerprint.get(k)!r})" for k in differs)
        raise CheckpointError(f"checkpoint {path} (epoch {state.get('epoch')}) was written for another fine-tuning "
                              f"setup: {why}; {fix}")
    try:
        tensors = load_tensors(path)
        part = {p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)} for p in ("model/", "best/")}
        body.load_state_dict(part["model/"])
        if part["best/"].keys() != part["model/"].keys():
            raise ValueError("its best weights do not match the model")
        optimizer_from_tensors(optimizer, tensors, state)
        return state, part["best/"]
    except (TensorFileError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be restored ({str(exc)[:300]}); {fix}") from None


