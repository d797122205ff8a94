"""Fit a propagation model to the seen classifier rows, with validation and early stopping.

Only the loss's rows matter during training, so each step runs the model on the receptive field
of the training rows (see :func:`kgzsl.models.operators.restrict`); in eval mode this gives the
same rows as the full graph. Validation uses held-out seen rows; the weights of the epoch with the
best validation cosine are kept.

With a ``checkpoint_path``, :func:`fit` saves a resumable checkpoint every ``checkpoint_every``
epochs: model, optimizer and best weights, the history, the epoch and the torch random state, in
one safetensors file (tensors, plus the rest as JSON in its header; no pickle), written atomically
(see :mod:`kgzsl.training.fit_state`).
``resume=True`` restores all of it, so an interrupted run continues to exactly the result of an
uninterrupted one (bit-identical on the CPU).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kgzsl.errors import InputError
from kgzsl.training.config import TrainConfig
from kgzsl.training.fit_state import FitResult, fit_fingerprint, restore_fit, save_fit
from kgzsl.models import PropagationModel
from kgzsl.models.operators import Operator, restrict

__all__ = ["FitResult", "fit", "keep_every_row", "split_seen", "regression_loss", "LOSSES",
           "MIN_SEEN_FOR_VALIDATION"]

logger = logging.getLogger(__name__)

LOSSES = ("sse", "mse", "cosine", "rank")
"""The training losses :func:`regression_loss` knows."""


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "sse", margin: float = 0.1
                    ) -> torch.Tensor:
    """The loss between predicted rows and the real rows of the same classes.

    Args:
        pred: ``[N, D]`` predicted rows.
        target: ``[N, D]`` real rows, in the same order.
        kind: ``sse``: sum of squared errors / (2·N) (SGCN, DGP); ``mse``: mean squared error
            (GCNZ); ``cosine``: 1 - the mean cosine of each row to its target; ``rank``: a hinge
            ranking loss over the rows given, each predicted row closer (cosine) to its own target
            than to each other row's target by ``margin`` (mean over the pairs).
        margin: The ranking loss's margin.

    Raises:
        kgzsl.errors.InputError: For another ``kind``.
    """
    if kind == "sse":
        return (pred - target).pow(2).sum() / (2 * pred.size(0))
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "cosine":
        return 1 - F.cosine_similarity(pred, target, dim=1).mean()
    if kind == "rank":
        sim = F.normalize(pred, dim=1) @ F.normalize(target, dim=1).T
        own = sim.diagonal().unsqueeze(1)
        others = ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        return (margin - own + sim).clamp(min=0)[others].mean() if len(sim) > 1 else (1 - own).mean()
    raise InputError(f"unknown loss {kind!r}; use one of {', '.join(LOSSES)}")


#: fewest seen rows that still get a validation row when ``val_fraction`` rounds their share to 0
MIN_SEEN_FOR_VALIDATION = 4
#: fewer validation rows than this: the epoch they choose is mostly chance, and a warning says so
FEW_VALIDATION_ROWS = 5


def split_seen(seen: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split seen rows into (train, validation) with a seeded permutation.

    With ``val_fraction > 0`` there is at least one validation row once there are
    :data:`MIN_SEEN_FOR_VALIDATION` seen rows; with fewer, none, and a warning says so (training then
    keeps the epoch with the lowest training loss).

    Returns:
        Two index tensors into ``seen`` positions (not node ids), each sorted.
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = seen.numel()
    n_val = int(round(n * val_fraction)) if n > 1 else 0
    if val_fraction > 0 and n_val == 0:
        if n >= MIN_SEEN_FOR_VALIDATION:
            n_val = 1
        else:
            logger.warning("only %d seen row(s) in the graph: no validation rows (they need at least %d); training "
                           "keeps the epoch with the lowest training loss and reports no validation cosine. Add "
                           "seen classes to the graph (e.g. build-graph --wnids imagenet1k,...)", n,
                           MIN_SEEN_FOR_VALIDATION)
    elif 0 < n_val < FEW_VALIDATION_ROWS:  # 16 seen fish, 1 validation row: "best at epoch 4 (104 epochs)"
        logger.warning("only %d validation row(s) of %d seen rows: the epoch they choose is mostly chance, and "
                       "training may stop early; raise train.val_fraction, or add seen classes to the graph "
                       "(e.g. build-graph --wnids imagenet1k,...)", n_val, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _to_torch(layers: list[list[Operator]], device: torch.device) -> list[list[torch.Tensor]]:
    return [[op.to_torch(device) for op in ops] for ops in layers]


def _remember(model: PropagationModel, x: torch.Tensor, train_rows: torch.Tensor, train_targets: torch.Tensor,
              val_rows: torch.Tensor, val_targets: torch.Tensor, device: torch.device | str) -> FitResult:
    """Training for a model with nothing to learn (:class:`~kgzsl.models.conse.ConSE`): it keeps the
    training rows' features and targets; the result has no epochs, and the validation cosine."""
    start = time.perf_counter()
    model.to(device).remember(x[train_rows].to(device), train_targets.to(device))  # type: ignore[operator]
    model.eval()
    result = FitResult()
    if val_rows.numel():
        with torch.no_grad():
            score = float((model.predict_rows(x.to(device), [], val_rows) * val_targets.to(device)).sum(1).mean())
        result.val_cosine, result.best_val_cosine = [score], score
        logger.info("%s: remembered %d rows; validation cosine %.4f", model.name, train_rows.numel(), score)
    result.seconds = result.seconds_to_best = time.perf_counter() - start
    return result


def keep_every_row(model: PropagationModel, x: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> bool:
    """Once validation is done, let a model with nothing to train remember every seen row.

    :func:`fit` makes such a model (:class:`~kgzsl.models.conse.ConSE`) remember the training rows
    only, so that its validation cosine is honest. After that is measured, the validation rows are
    more neighbours for the nodes near them, and nothing is left to choose on them. A trained model
    is left as it is (retraining it on every row would cost its training time again).

    Args:
        model: A model :func:`fit` has fitted.
        x: ``[N, F]`` node features of the whole graph.
        rows: Node indices of every seen row used (training and validation).
        targets: ``[len(rows), D]`` their unit target rows.

    Returns:
        Whether the model now remembers ``rows`` (False: a trained model, unchanged).
    """
    if model.trainable:
        return False
    model.remember(x[rows], targets)  # type: ignore[operator]  # it moves them to its own device
    logger.info("%s: validation done; remembers all %d seen rows", model.name, rows.numel())
    return True


def fit(model: PropagationModel, x: torch.Tensor, layers: list[list[Operator]], train_rows: torch.Tensor,
        train_targets: torch.Tensor, val_rows: torch.Tensor, val_targets: torch.Tensor, config: TrainConfig,
        device: torch.device | str = "cpu", progress: bool = True,
        checkpoint_path: str | os.PathLike | None = None, checkpoint_every: int | None = None,
        resume: bool = False) -> FitResult:
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
        checkpoint_path: Where to keep a resumable checkpoint (a ``.safetensors`` file); None: none.
        checkpoint_every: Epochs between checkpoints; None takes ``config.checkpoint_every``; 0
            disables periodic checkpoints.
        resume: Continue from ``checkpoint_path`` if it exists (else start from the beginning, with a
            warning). ``model`` must be built exactly as for the interrupted run (same seed), and
            the data and settings must match; the result is then identical to an uninterrupted run.
            The checkpoint is left in place (:func:`kgzsl.training.run.train_run` removes it once its run
            folder is complete).

    A model with nothing to train (``model.trainable`` False) only remembers the training rows;
    :func:`keep_every_row` gives it the validation rows too, once they have served.

    Returns:
        The loss / validation history and the best epoch.

    Raises:
        CheckpointError: If ``resume`` meets a checkpoint of another model, graph, target set or
            optimiser setting, or an unreadable one (a pickle is refused, never unpickled).
    """
    if config.keep not in ("best", "last"):
        raise InputError(f"train.keep must be 'best' or 'last', got {config.keep!r}")
    if not model.trainable:
        return _remember(model, x, train_rows, train_targets, val_rows, val_targets, device)
    device = torch.device(device)
    every = config.checkpoint_every if checkpoint_every is None else checkpoint_every
    if every < 0:
        raise InputError(f"checkpoint_every must be >= 0, got {every}")
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    y_train, y_val = train_targets.to(device), val_targets.to(device)
    train_layers, train_inputs = restrict(layers, train_rows)
    adj_train = _to_torch(train_layers, device)
    x_train = x[train_inputs].to(device)
    if config.precompute_first_layer:
        x_train = model.prepare_inputs(x_train, adj_train)  # first aggregation computed once
    if val_rows.numel():
        val_layers, val_inputs = restrict(layers, val_rows)
        x_val, adj_val = x[val_inputs].to(device), _to_torch(val_layers, device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    fingerprint = fit_fingerprint(model, x, train_rows, train_targets, val_rows, val_targets, config) \
        if ckpt is not None else {}
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    best = -math.inf
    first = 1
    if resume and ckpt is None:
        raise ValueError("resume=True needs a checkpoint_path")
    if resume and ckpt.exists():
        best_state, result, best, done = restore_fit(ckpt, fingerprint, model, optimizer, device)
        first = done + 1
        logger.info("resuming %s from %s at epoch %d (%s %.4f at epoch %d)", model.name, ckpt, done,
                    "best validation cosine" if val_rows.numel() else "lowest training loss",
                    best if val_rows.numel() else -best, result.best_epoch)
    elif resume:
        logger.warning("no checkpoint at %s: training %s from the start", ckpt, model.name)
    elif ckpt is not None and ckpt.exists():
        logger.warning("starting %s over: the checkpoint %s of an interrupted training will be overwritten "
                       "(stop now and add --resume to continue it instead)", model.name, ckpt)
    start = time.perf_counter() - result.seconds
    # the bar only draws on a terminal; elsewhere (CI, logs) a line is logged every 50 epochs
    bar = tqdm(range(first, config.epochs + 1), desc=f"train {model.name}", disable=None if progress else True,
               leave=False, initial=first - 1, total=config.epochs)
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
            result.val_cosine.append(score)
        else:  # no validation rows: the lowest training loss wins (never reported as a cosine)
            score = -loss_value
        result.epochs_run = epoch
        if score > best:
            best, result.best_epoch = score, epoch
            result.seconds_to_best = time.perf_counter() - start
            best_state = copy.deepcopy(model.state_dict())
        if val_rows.numel():
            bar.set_postfix(loss=f"{loss_value:.4f}", val=f"{score:.4f}", best=result.best_epoch)
            if bar.disable and epoch % 50 == 0:
                logger.info("epoch %d: loss %.4f, validation cosine %.4f (best %.4f at epoch %d)", epoch, loss_value,
                            score, best, result.best_epoch)
        else:
            bar.set_postfix(loss=f"{loss_value:.4f}", best=result.best_epoch)
            if bar.disable and epoch % 50 == 0:
                logger.info("epoch %d: loss %.4f (no validation rows; lowest loss %.4f at epoch %d)", epoch,
                            loss_value, -best, result.best_epoch)
        if not math.isfinite(loss_value):
            logger.warning("loss became %s at epoch %d; keeping the best weights so far", loss_value, epoch)
            break
        if epoch - result.best_epoch >= config.patience:
            break
        if ckpt is not None and every and epoch % every == 0 and epoch < config.epochs:
            result.seconds = time.perf_counter() - start
            save_fit(ckpt, model, optimizer, best_state, result, best, epoch, fingerprint, device)
    bar.close()
    result.seconds = time.perf_counter() - start
    result.best_val_cosine = best if val_rows.numel() else float("nan")
    if config.keep == "last":
        result.best_epoch = result.epochs_run
        result.best_val_cosine = result.val_cosine[-1] if val_rows.numel() and result.val_cosine else float("nan")
    else:
        model.load_state_dict(best_state)
    model.eval()
    if config.keep == "last":
        logger.info("%s: kept the last epoch, %d (loss %.4f; %.1fs, %.3fs/epoch)", model.name, result.epochs_run,
                    result.train_loss[-1] if result.train_loss else float("nan"), result.seconds,
                    result.seconds_per_epoch)
    elif val_rows.numel():
        logger.info("%s: best validation cosine %.4f at epoch %d of %d (%.1fs, %.3fs/epoch)", model.name, best,
                    result.best_epoch, result.epochs_run, result.seconds, result.seconds_per_epoch)
    else:
        logger.info("%s: no validation rows; lowest training loss %.4f at epoch %d of %d (%.1fs, %.3fs/epoch)",
                    model.name, -best, result.best_epoch, result.epochs_run, result.seconds,
                    result.seconds_per_epoch)
    return result
