"""Fit a propagation model to the seen classifier rows, with validation and early stopping.

Only the loss's rows matter during training, so each step runs the model on the receptive field
of the training rows (see :func:`kgzsl.models.operators.restrict`); in eval mode this gives the
same rows as the full graph. Validation uses held-out seen rows; the weights of the epoch with the
best validation cosine are kept.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kgzsl.config import TrainConfig
from kgzsl.models import PropagationModel
from kgzsl.models.operators import Operator, restrict

__all__ = ["FitResult", "fit", "split_seen", "regression_loss"]

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What :func:`fit` returns: the history and where the best validation score was."""

    train_loss: list[float] = field(default_factory=list)
    val_cosine: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_val_cosine: float = float("nan")
    epochs_run: int = 0
    seconds: float = 0.0
    seconds_to_best: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall time of one epoch (training step + validation)."""
        return self.seconds / max(self.epochs_run, 1)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "sse") -> torch.Tensor:
    """``sse``: sum of squared errors / (2·N) (SGCN, DGP); ``mse``: mean squared error (GCNZ)."""
    if kind == "sse":
        return (pred - target).pow(2).sum() / (2 * pred.size(0))
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"unknown loss {kind!r}; use 'sse' or 'mse'")


def split_seen(seen: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split seen rows into (train, validation) with a seeded permutation.

    Returns:
        Two index tensors into ``seen`` positions (not node ids), each sorted.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = seen.numel()
    n_val = int(round(n * val_fraction)) if n > 1 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _to_torch(layers: list[list[Operator]], device: torch.device) -> list[list[torch.Tensor]]:
    return [[op.to_torch(device) for op in ops] for ops in layers]


def fit(model: PropagationModel, x: torch.Tensor, layers: list[list[Operator]], train_rows: torch.Tensor,
        train_targets: torch.Tensor, val_rows: torch.Tensor, val_targets: torch.Tensor, config: TrainConfig,
        device: torch.device | str = "cpu", progress: bool = True) -> FitResult:
    """Train ``model`` so that its rows at ``train_rows`` match ``targets``.

    Args:
        model: The propagation model (modified in place; ends with the best validation weights).
        x: ``[N, F]`` node features of the whole graph.
        layers: ``model.operators(graph)``.
        train_rows: Node indices supervised by the loss.
        train_targets: ``[len(train_rows), D]`` unit target rows.
        val_rows: Node indices used for early stopping (may be empty: then the lowest loss wins).
        val_targets: ``[len(val_rows), D]`` unit target rows.
        config: Epochs, optimiser and stopping settings.
        device: Where to compute.
        progress: Show a progress bar.

    Returns:
        The loss / validation history and the best epoch.
    """
    device = torch.device(device)
    y_train, y_val = train_targets.to(device), val_targets.to(device)
    train_layers, train_inputs = restrict(layers, train_rows)
    x_train = x[train_inputs].to(device)
    adj_train = _to_torch(train_layers, device)
    if val_rows.numel():
        val_layers, val_inputs = restrict(layers, val_rows)
        x_val, adj_val = x[val_inputs].to(device), _to_torch(val_layers, device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    best = -math.inf
    start = time.perf_counter()
    # the bar only draws on a terminal; elsewhere (CI, logs) a line is logged every 50 epochs
    bar = tqdm(range(1, config.epochs + 1), desc=f"train {model.name}", disable=None if progress else True,
               leave=False)
    for epoch in bar:
        model.train()
        loss = regression_loss(model(x_train, adj_train), y_train, config.loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
        result.train_loss.append(loss_value)
        if val_rows.numel():
            model.eval()
            with torch.no_grad():
                score = float((model(x_val, adj_val) * y_val).sum(1).mean())
        else:
            score = -loss_value
        result.val_cosine.append(score)
        result.epochs_run = epoch
        if score > best:
            best, result.best_epoch = score, epoch
            result.seconds_to_best = time.perf_counter() - start
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{loss_value:.4f}", val=f"{score:.4f}", best=result.best_epoch)
        if bar.disable and epoch % 50 == 0:
            logger.info("epoch %d: loss %.4f, validation cosine %.4f (best %.4f at epoch %d)", epoch, loss_value,
                        score, best, result.best_epoch)
        if not math.isfinite(loss_value):
            logger.warning("loss became %s at epoch %d; keeping the best weights so far", loss_value, epoch)
            break
        if epoch - result.best_epoch >= config.patience:
            break
    bar.close()
    result.seconds = time.perf_counter() - start
    result.best_val_cosine = best if val_rows.numel() else float("nan")
    model.load_state_dict(best_state)
    model.eval()
    logger.info("%s: best validation cosine %.4f at epoch %d of %d (%.1fs, %.3fs/epoch)", model.name, best,
                result.best_epoch, result.epochs_run, result.seconds, result.seconds_per_epoch)
    return result
