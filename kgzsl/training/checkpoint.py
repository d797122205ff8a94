"""Resumable checkpoints of training and fine-tuning, and where a run's fine-tune keeps its files.

Both :func:`kgzsl.training.fit.fit` and :func:`kgzsl.tasks.finetune.finetune_run` write one
safetensors file: the current (``model/``) and best (``best/``) weights and the optimizer state as
tensors, the rest as JSON in the header, together with a *fingerprint* of everything that must not
change between an interrupted run and its resumption (settings, and :func:`digest` of the data).
Nothing is pickled, and a file written for other settings is refused with the differences named.

The module also says where a finished fine-tune lies (:func:`finetuned_weights`), so that
:class:`kgzsl.inference.classifier.ZeroShotClassifier` can find one without importing the
training stack.
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

from kgzsl.errors import InputError
from kgzsl.utils.io import (TensorFileError, load_tensors, optimizer_from_tensors, optimizer_to_tensors,
                            read_tensor_metadata, save_tensors)

__all__ = ["CheckpointError", "CHECKPOINT_FORMAT", "digest", "save_checkpoint", "load_checkpoint",
           "restore_checkpoint", "finetuned_weights", "FINETUNE_DIR", "WEIGHTS_FILE", "SUMMARY_FILE",
           "CHECKPOINT_FILE", "BACKBONE_COPY"]

logger = logging.getLogger(__name__)

#: version of the checkpoint layout
CHECKPOINT_FORMAT = 1
FINETUNE_DIR, WEIGHTS_FILE, SUMMARY_FILE, CHECKPOINT_FILE = ("finetune", "backbone.safetensors", "finetune.json",
                                                             "checkpoint.safetensors")
#: a run trained on a local weights file keeps its own copy of the backbone under this name: the run
#: stays whole when the file moves, changes or is deleted
BACKBONE_COPY = "backbone.safetensors"
# kind -> (header key marking the file, what "from the start" means, what must match)
_KINDS = {"training": ("kgzsl_checkpoint", "train", "the settings"),
          "fine-tuning": ("kgzsl_finetune_checkpoint", "fine-tune", "the settings and data")}


class CheckpointError(InputError):
    """A checkpoint cannot be resumed: unreadable, or written for another training or fine-tuning setup."""


def digest(*parts: Any) -> str:
    """Short sha256 of tensors (shape, dtype, bytes), dicts of them (values in order) or JSON values.

    Example:
        >>> digest(torch.zeros(2), {"w": torch.ones(3)}) == digest(torch.zeros(2), torch.ones(3))
        True
    """
    h = hashlib.sha256()
    for part in parts:
        for t in part.values() if isinstance(part, dict) else [part]:
            if isinstance(t, torch.Tensor):
                t = t.detach().cpu().contiguous()
                h.update(f"{tuple(t.shape)}|{t.dtype}|".encode() + t.reshape(-1).view(torch.uint8).numpy().tobytes())
            else:
                h.update(json.dumps(t, default=str).encode())
    return h.hexdigest()[:24]


def _fix(path: Path, kind: str) -> str:
    _, verb, what = _KINDS[kind]
    return f"delete {path} to {verb} from the start, or resume with {what} it was written with"


def save_checkpoint(path: str | os.PathLike, kind: str, model: nn.Module, best: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, state: dict[str, Any],
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``model``'s weights, the ``best`` weights, the optimizer and ``state`` atomically.

    Args:
        path: The ``.safetensors`` file.
        kind: ``"training"`` or ``"fine-tuning"``.
        model: The module being trained.
        best: The best weights so far (a state dict of ``model``).
        optimizer: Its optimizer (momentum buffers and so on become tensors).
        state: JSON-able progress, with the run's ``"fingerprint"``.
        extra: More tensors to keep (e.g. random generator states).
    """
    key = _KINDS[kind][0]
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best/{k}": v for k, v in best.items()})
    optim_tensors, optim_header = optimizer_to_tensors(optimizer)
    tensors.update(optim_tensors)
    tensors.update(extra or {})
    header = {**state, "format": CHECKPOINT_FORMAT, **optim_header}
    # clone: safetensors refuses tensors that share memory, and the file must not alias live weights
    save_tensors(path, {k: v.detach().clone() for k, v in tensors.items()},
                 metadata={key: str(CHECKPOINT_FORMAT), "state": json.dumps(header)})
    logger.debug("%s checkpoint at epoch %s written to %s", kind, state.get("epoch"), path)


def load_checkpoint(path: str | os.PathLike, kind: str, fingerprint: dict[str, Any],
                    meaning: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a checkpoint written by :func:`save_checkpoint` and check it against ``fingerprint``.

    Args:
        path: The checkpoint file.
        kind: ``"training"`` or ``"fine-tuning"``; a file of the other kind is refused.
        fingerprint: What the resuming run would write; every key must match.
        meaning: Optional words for each fingerprint key, used in the error message.

    Returns:
        ``(state, tensors)``: the JSON state and every tensor, on the CPU.

    Raises:
        CheckpointError: If the file is not such a checkpoint (a pickle is refused, never
            unpickled), is truncated, or was written for another setup (the keys that differ named).
    """
    path = Path(path)
    key, _, _ = _KINDS[kind]
    fix = _fix(path, kind)
    try:
        meta = read_tensor_metadata(path)
    except TensorFileError as exc:  # a pickle, a truncated file ...: refused, never unpickled
        raise CheckpointError(f"{exc}; {fix}") from None
    if meta.get(key) != str(CHECKPOINT_FORMAT) or "state" not in meta:
        raise CheckpointError(f"{path} is not a kgzsl {kind} checkpoint of format {CHECKPOINT_FORMAT}; {fix}")
    try:
        state = json.loads(meta["state"])
        epoch = int(state["epoch"])
        saved = dict(state["fingerprint"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} has a malformed header ({exc}); {fix}") from None
    differs = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if differs:
        named = {k: f"{k}: {meaning.get(k, 'changed')}" if meaning else k for k in differs}
        why = "; ".join(f"{named[k]} (checkpoint {saved.get(k)!r}, now {fingerprint.get(k)!r})" for k in differs)
        raise CheckpointError(f"checkpoint {path} (epoch {epoch}) was written for another {kind} setup: {why}; {fix}")
    try:
        return state, load_tensors(path)
    except TensorFileError as exc:  # a valid header over truncated tensor data
        raise CheckpointError(f"{exc}; {fix}") from None


def restore_checkpoint(path: str | os.PathLike, kind: str, state: dict[str, Any], tensors: dict[str, torch.Tensor],
                       model: nn.Module, optimizer: torch.optim.Optimizer,
                       device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Load what :func:`load_checkpoint` read into ``model`` and ``optimizer``; return the best weights.

    Args:
        device: Where the returned best weights go (None: left on the CPU).

    Raises:
        CheckpointError: If the weights or the optimizer state do not fit ``model`` / ``optimizer``.
    """
    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    try:
        model.load_state_dict(part("model/"))
        best = {k: v.to(device) for k, v in part("best/").items()} if device is not None else part("best/")
        if best.keys() != model.state_dict().keys():
            raise ValueError("its best weights do not match the model's parameters")
        optimizer_from_tensors(optimizer, tensors, state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be restored ({str(exc)[:300]}); {_fix(Path(path), kind)}") \
            from None
    return best


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
