"""What a fit records, and how an interrupted fit resumes from its checkpoint.

:func:`~kgzsl.training.fit.fit` keeps its history in a :class:`FitResult`. With a checkpoint
path it saves, every few epochs, the model, the optimizer, the best weights, the history, the
epoch and the torch random state (:func:`save_fit`, in the checkpoint format of
:mod:`kgzsl.training.checkpoint`), with a :func:`fit_fingerprint` of everything that must not change
between the interrupted run and its resumption; :func:`restore_fit` checks it and restores all of
it, so that the resumed fit ends bit-identical to an uninterrupted one on the CPU.

Example:
    >>> saved = fit_fingerprint(model, x, train_rows, train_targets, val_rows, val_targets, config)
    >>> best_state, result, best, epoch = restore_fit(path, saved, model, optimizer, device)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgzsl.models import PropagationModel
from kgzsl.training.checkpoint import CheckpointError, digest, load_checkpoint, restore_checkpoint, save_checkpoint
from kgzsl.training.config import TrainConfig

__all__ = ["FitResult", "fit_fingerprint", "restore_fit", "save_fit"]


@dataclass
class FitResult:
    """What :func:`fit` returns: the history and where the best validation score was."""

    train_loss: list[float] = field(default_factory=list)
    val_cosine: list[float] = field(default_factory=list)  # empty when there were no validation rows
    best_epoch: int = 0
    best_val_cosine: float = float("nan")
    epochs_run: int = 0
    seconds: float = 0.0
    seconds_to_best: float = 0.0
    resumed_from: int = 0

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall time of one epoch (training step + validation)."""
        return self.seconds / max(self.epochs_run, 1)


def fit_fingerprint(model: PropagationModel, x: torch.Tensor, train_rows: torch.Tensor, train_targets: torch.Tensor,
                 val_rows: torch.Tensor, val_targets: torch.Tensor, config: TrainConfig) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    return {
        "model": model.name,
        "hparams": json.loads(json.dumps(model.hparams, default=str)),
        "parameters": {k: list(v.shape) for k, v in model.state_dict().items()},
        "nodes": int(x.size(0)),
        "node_features": digest(x),
        "train_rows": int(train_rows.numel()),
        "train_targets": digest(train_rows, train_targets),
        "val_targets": digest(val_rows, val_targets),
        "optimizer": {"lr": config.lr, "weight_decay": config.weight_decay, "loss": config.loss},
    }


_FINGERPRINT_MEANING = {
    "model": "another propagation model", "hparams": "other model hyper-parameters",
    "parameters": "other layer sizes", "nodes": "a graph with another node count",
    "node_features": "other node features (graph, text encoder or gloss setting)",
    "train_rows": "another number of training rows", "train_targets": "other target rows (backbone or holdout)",
    "val_targets": "another validation split", "optimizer": "other optimiser settings (lr, weight_decay, loss)",
}


def save_fit(path: Path, model: PropagationModel, optimizer: torch.optim.Optimizer,
                     best_state: dict[str, torch.Tensor], result: FitResult, best: float, epoch: int,
                     fingerprint: dict[str, Any], device: torch.device) -> None:
    """Write a resumable checkpoint of a fit at ``epoch``: weights, optimizer, best weights, history, random state."""
    rng = {"rng/cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng.update({f"rng/cuda/{j}": state for j, state in enumerate(torch.cuda.get_rng_state_all())})
    state = {
        "epoch": epoch, "best": best, "best_epoch": result.best_epoch,
        "train_loss": result.train_loss, "val_cosine": result.val_cosine, "seconds": result.seconds,
        "seconds_to_best": result.seconds_to_best, "resumed_from": result.resumed_from, "fingerprint": fingerprint,
    }
    save_checkpoint(path, "training", model, best_state, optimizer, state, extra=rng)


def restore_fit(path: Path, fingerprint: dict[str, Any], model: PropagationModel, optimizer: torch.optim.Optimizer,
             device: torch.device) -> tuple[dict[str, torch.Tensor], FitResult, float, int]:
    """Resume from the checkpoint at ``path``: weights, optimizer, random state and history."""
    state, tensors = load_checkpoint(path, "training", fingerprint, _FINGERPRINT_MEANING)
    best_state = restore_checkpoint(path, "training", state, tensors, model, optimizer, device)
    try:
        torch.set_rng_state(tensors["rng/cpu"])
        cuda = {k[len("rng/cuda/"):]: v for k, v in tensors.items() if k.startswith("rng/cuda/")}
        if device.type == "cuda" and cuda:
            torch.cuda.set_rng_state_all([cuda[k] for k in sorted(cuda, key=int)])
        result = FitResult(train_loss=[float(v) for v in state["train_loss"]],
                           val_cosine=[float(v) for v in state["val_cosine"]], best_epoch=int(state["best_epoch"]),
                           epochs_run=int(state["epoch"]), seconds=float(state["seconds"]),
                           seconds_to_best=float(state["seconds_to_best"]), resumed_from=int(state["epoch"]))
        best = float(state["best"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be restored ({exc}); delete it to train from the start") \
            from None
    return best_state, result, best, int(state["epoch"])
