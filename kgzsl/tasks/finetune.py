"""Fine-tune the backbone under the run's predicted rows (DGP stage 2, Kampffmeyer et al. 2019).

The predicted rows of the seen classes become a fixed final layer (times the run's ``row_scale``,
as at prediction) and every other backbone weight is trained with cross-entropy on seen-class
images: SGD (lr 1e-4, momentum 0.9), batches of 64, RandomResizedCrop + horizontal flip. The
features then fit the predicted rows, which also serve the unseen classes.

BatchNorm layers stay in eval mode by default (running statistics frozen, scale and shift
trained): fine-tuning batches are small, and per-process batch statistics would make the result
depend on the number of processes. ``train_bn=True`` trains them as usual.

Stopping rule: after ``epochs`` epochs, or ``patience`` epochs without a validation gain (top-1
accuracy on a seeded per-class split, ties broken by the validation loss), or after ``max_steps``
optimiser steps; the best epoch's weights are kept. Under ``torchrun`` every process trains a
shard of each batch (DistributedDataParallel; nccl on GPUs, gloo on the CPU) and only rank 0 logs
and writes. Outputs, in ``<run>/finetune/``::

    backbone.safetensors    the whole fine-tuned model (original 1000-way layer included), for
                            load_backbone(name, weights=file); ZeroShotClassifier.load uses it
    finetune.json           settings, per-epoch history, best epoch, ``finished``
    checkpoint.safetensors  written atomically every epoch, removed once finished; ``resume=True``
                            continues from it to the result of an uninterrupted run

The checkpoint holds the current and best weights and the momentum buffers as tensors, the rest
as JSON in its header (no pickle). It needs no random state: every epoch's randomness is seeded
from ``(seed, epoch)`` (see :func:`kgzsl.vision.folders.item_seed`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from kgzsl.errors import InputError
from kgzsl.inference.head import LinearHead
from kgzsl.utils.distributed import barrier, gather_objects, init_distributed
from kgzsl.tasks.finetune_data import make_loaders, select_classes, split_per_class, warn_unreadable
from kgzsl.training.checkpoint import (CHECKPOINT_FILE, FINETUNE_DIR, SUMMARY_FILE, WEIGHTS_FILE, CheckpointError,
                                       digest, finetuned_weights, load_checkpoint, restore_checkpoint,
                                       save_checkpoint)
from kgzsl.utils.io import save_tensors, write_json
from kgzsl.vision.folders import image_folder, item_seed

__all__ = ["finetune_run", "finetuned_weights", "FINETUNE_DIR", "CheckpointError"]

logger = logging.getLogger(__name__)

#: fewer validation images than this: the epoch they choose is mostly chance, and a warning says so
FEW_VALIDATION_IMAGES = 5

class _FixedHead(nn.Module):
    """The backbone body followed by the classifier's head over fixed rows ``[W | b]`` (never trained)."""

    def __init__(self, body: nn.Module, rows: torch.Tensor, train_bn: bool = False) -> None:
        super().__init__()
        self.body = body
        self.train_bn = train_bn
        self.head = LinearHead(rows, int8=False)  # the rows' device: not a buffer, so .to() leaves it

    def train(self, mode: bool = True) -> "_FixedHead":
        """Switch mode; BatchNorm layers stay in eval mode unless ``train_bn``."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not self.train_bn:
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.logits(self.body(x))


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _holdout(run_dir: str | os.PathLike, wnids: list[str]) -> list[str]:
    """The seen classes the run held out from training (read alone: rows.safetensors can be large)."""
    from safetensors import safe_open

    with safe_open(str(Path(run_dir) / "rows.safetensors"), framework="pt") as fh:
        held = fh.get_tensor("holdout_rows").tolist() if "holdout_rows" in fh.keys() else []
    return [wnids[i] for i in held]


def _stop_reason(history: list[dict[str, Any]], best_epoch: int, epochs: int, patience: int, steps: int,
                 max_steps: int | None) -> str | None:
    if history and not math.isfinite(history[-1]["train_loss"]):
        return "non-finite loss"
    if max_steps is not None and steps >= max_steps:
        return "max_steps"
    if len(history) >= epochs:
        return "epochs"
    if history and len(history) - best_epoch >= patience:
        return "patience"
    return None


def _train_epoch(model: nn.Module, batches: Any, optimizer: torch.optim.Optimizer, scaler: Any, autocast: Any,
                 device: torch.device, crop: Any, distributed: bool, skipped: set, steps: int,
                 max_steps: int | None) -> tuple[torch.Tensor, int, int]:
    """One pass of SGD steps over ``batches``; returns ``(sum of the batch losses times their sizes, images, steps)``.

    A batch whose images were all unreadable is skipped alone; under torchrun the process steps on
    one blank image of weight 0 instead, so that every process takes part in every step.
    """
    loss_sum, seen = torch.zeros((), device=device), 0
    for _, images, labels, errors in batches:
        warn_unreadable(errors, skipped)
        weight = 1.0
        if images is None:  # every image of this shard's batch was unreadable
            if not distributed:
                continue
            images, labels, weight = torch.zeros(1, 3, *crop), torch.zeros(1, dtype=torch.long), 0.0
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss * weight).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            (loss * weight).backward()
            optimizer.step()
        steps += 1
        loss_sum += loss.detach() * labels.numel() * weight
        seen += int(labels.numel() * weight)
        if max_steps is not None and steps >= max_steps:
            break
    return loss_sum, seen, steps


def _evaluate(net: nn.Module, loader: DataLoader, device: torch.device, autocast: Any,
              skipped: set[str]) -> tuple[int, int, float]:
    correct, total, loss = 0, 0, 0.0
    net.eval()
    with torch.no_grad():
        for _, images, labels, errors in loader:
            warn_unreadable(errors, skipped)
            if images is None:
                continue
            labels = labels.to(device)
            with autocast():
                logits = net(images.to(device, non_blocking=True)).float()
            correct += int((logits.argmax(1) == labels).sum())
            total += labels.numel()
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
    return correct, total, loss


def finetune_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike, *, epochs: int = 10, patience: int = 2,
                 lr: float = 1e-4, momentum: float = 0.9, batch_size: int = 64, val_fraction: float = 0.1,
                 seed: int = 0, device: str = "auto", workers: int | None = None, amp: bool | str = "auto",
                 train_bn: bool = False, resume: bool = False, progress: bool = True,
                 max_steps: int | None = None) -> dict[str, Any]:
    """Fine-tune a run's backbone on seen-class images under its predicted rows; write ``<run>/finetune/``.

    Args:
        run_dir: A run folder written by ``kgzsl train``.
        data_dir: ImageNet-style folder of seen-class images, ``data_dir/<wnid>/*.jpg``. Folders of
            classes the backbone never saw, that are not graph nodes or that the run held out are
            ignored (with a warning); unreadable images are skipped with a warning.
        epochs: At most this many passes over the training images.
        patience: Stop after this many epochs without a validation gain.
        lr: SGD learning rate.
        momentum: SGD momentum.
        batch_size: Images per optimiser step, split over the torchrun processes (must divide by their number).
        val_fraction: Fraction of each class's images held out to measure top-1 accuracy every epoch
            (0: none; the epoch with the lowest training loss is then kept).
        seed: Seed of the split, the data order, the augmentation and dropout (torch's global
            generator is re-seeded every epoch).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``; under torchrun each process
            takes GPU ``LOCAL_RANK``.
        workers: DataLoader processes decoding images per training process; None picks from the CPU count.
        amp: ``"auto"``: bfloat16 (else float16) autocast on CUDA, none on the CPU; True/False force it.
        train_bn: Train BatchNorm statistics too (default: kept in eval mode).
        resume: Continue from ``<run>/finetune/checkpoint.safetensors`` (same settings and data).
        progress: Show a progress bar per epoch (on a terminal, rank 0 only).
        max_steps: Stop after this many optimiser steps in total (quick trials and tests).

    Returns:
        What ``finetune.json`` holds: settings, ``history`` (per epoch: train loss, val top-1 and
        loss, seconds), ``best_epoch``, ``best_val_top1``, ``stopped`` (why), ``weights``, ``finished``.

    Raises:
        ValueError: For bad settings, or a data folder with fewer than two usable classes.
        CheckpointError: If ``resume`` meets a checkpoint of other settings or data, or an unreadable one.
        InputError: If ``resume`` meets a finished fine-tune (nothing to continue).
        kgzsl.inference.run_folder.RunNotFoundError: If ``run_dir`` is not a finished run.
    """
    from kgzsl.inference.classifier import ZeroShotClassifier

    for name, value, low in (("epochs", epochs, 1), ("patience", patience, 1), ("batch_size", batch_size, 1),
                             ("max_steps", max_steps or 1, 1), ("workers", 0 if workers is None else workers, 0)):
        if int(value) < low:
            raise InputError(f"{name} must be >= {low}, got {value}")
    if not lr > 0 or not 0 <= momentum < 1:
        raise InputError(f"need lr > 0 and 0 <= momentum < 1, got lr={lr}, momentum={momentum}",
                         cli_message=f"--lr must be > 0, got {lr}" if 0 <= momentum < 1 else None)
    ctx = init_distributed(device)
    dev, main = ctx.device, ctx.is_main
    if batch_size % ctx.world_size:
        raise InputError(f"batch_size {batch_size} does not divide by the {ctx.world_size} processes; pick a multiple",
                         cli_message=f"--batch-size {batch_size} does not divide by the {ctx.world_size} processes; "
                         "pick a multiple")
    use_amp = dev.type == "cuda" if amp == "auto" else bool(amp)
    if use_amp and dev.type != "cuda":
        raise InputError(f"amp autocast is only used on CUDA, but the device is {dev}; pass amp='auto' or False")
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if use_amp else None
    out = Path(run_dir) / FINETUNE_DIR
    ckpt = out / CHECKPOINT_FILE
    done = finetuned_weights(run_dir)
    if resume and done is not None and not ckpt.exists():  # as `kgzsl train --resume` of a finished run
        raise InputError(f"the fine-tune in {out} is finished: --resume has nothing to continue (leave it out to "
                         "fine-tune again, which replaces it)")

    clf = ZeroShotClassifier.load(run_dir, device=str(dev), finetuned=False)
    backbone = clf.backbone
    classes = select_classes(data_dir, backbone.wnids, clf.wnids, _holdout(run_dir, clf.wnids), warn=main)
    items = image_folder(data_dir, wnids=classes)
    train_items, val_items = split_per_class(items, val_fraction, seed)
    if not train_items:
        raise InputError(f"{data_dir} holds no images of the classes {classes[:5]}...; add images named *.jpg")
    if val_fraction > 0 and not val_items and main:
        logger.warning("no validation images: %d images over %d classes give none at val_fraction %g (a class "
                       "needs %d images to lend one); no epoch can be chosen by validation top-1, so the last one "
                       "is kept", len(items), len(classes), val_fraction, int(0.5 / val_fraction) + 1)
    elif 0 < len(val_items) < FEW_VALIDATION_IMAGES and main:  # one photo chose "100% at epoch 1"
        logger.warning("only %d validation image(s): the epoch they choose, and the validation top-1 reported, are "
                       "mostly chance; add images (each class lends one per %d) or raise val_fraction",
                       len(val_items), int(0.5 / val_fraction) + 1)
    resolved = clf.resolve_labels(classes)
    index = torch.tensor([r.index for r in resolved])
    rows = (clf.rows[index.to(clf.rows.device)].float() * clf.row_scale).to(dev)  # the predicted rows, scaled
    body = backbone.body
    body.requires_grad_(True)
    net = _FixedHead(body, rows, train_bn).to(dev)
    optimizer = torch.optim.SGD(body.parameters(), lr=lr, momentum=momentum)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    settings = {"lr": lr, "momentum": momentum, "batch_size": batch_size, "val_fraction": val_fraction, "seed": seed,
                "train_bn": train_bn, "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else "off"}
    rel = lambda its: [(str(Path(p).relative_to(data_dir)), w) for p, w in its]  # noqa: E731
    fingerprint = {"backbone": backbone.name, "base_weights": backbone.weights, "rows": digest(rows),
                   "classes": digest(classes), "train_images": digest(rel(train_items)),
                   "val_images": digest(rel(val_items)), "settings": settings, "processes": ctx.world_size}

    history: list[dict[str, Any]] = []
    best_epoch, best_score, steps, skipped = 0, None, 0, set()
    best = _cpu_copy(body.state_dict())
    if resume and ckpt.exists():
        state, tensors = load_checkpoint(ckpt, "fine-tuning", fingerprint)
        best = restore_checkpoint(ckpt, "fine-tuning", state, tensors, body, optimizer)
        history, best_epoch, best_score, steps = state["history"], state["best_epoch"], state["best_score"], state["steps"]
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if main:
            logger.info("resuming the fine-tune from %s after epoch %d", ckpt, len(history))
    elif resume and main:
        logger.warning("no checkpoint at %s: fine-tuning from the start", ckpt)
    elif main and (ckpt.exists() or done is not None):  # not --resume: the earlier fine-tune goes
        logger.warning("replacing the %s fine-tune in %s with this one, from the backbone's own weights%s",
                       "interrupted" if ckpt.exists() else "finished", out,
                       "; to continue the interrupted one instead, stop and pass --resume (resume=True)"
                       if ckpt.exists() else "")
    if main and not (resume and ckpt.exists()):
        (out / WEIGHTS_FILE).unlink(missing_ok=True)  # a new fine-tune replaces any earlier one
    summary: dict[str, Any] = {
        "run": str(run_dir), "data": str(data_dir), "backbone": backbone.name, "base_weights": backbone.weights,
        "classes": len(classes), "train_images": len(train_items), "val_images": len(val_items),
        "settings": {**settings, "epochs": epochs, "patience": patience, "max_steps": max_steps},
        "processes": ctx.world_size, "device": str(dev), "finished": False}

    model: nn.Module = net
    if ctx.distributed:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[dev] if dev.type == "cuda" else None,
                                                    forward_sync_buffers=train_bn)
    train_ds, sampler, train_loader, val_loader = make_loaders(
        train_items, val_items, classes, backbone.transform, seed=seed, batch_size=batch_size // ctx.world_size,
        rank=ctx.rank, world_size=ctx.world_size, workers=workers, pin_memory=dev.type == "cuda")
    crop = train_ds.transform.transforms[0].size
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    from tqdm.auto import tqdm

    if main:
        logger.info("fine-tuning %s on %d classes: %d training, %d validation images, %d process(es) on %s",
                    backbone.name, len(classes), len(train_items), len(val_items), ctx.world_size, dev)
        write_json(out / SUMMARY_FILE, {**summary, "history": history})
    start = time.perf_counter()
    while (reason := _stop_reason(history, best_epoch, epochs, patience, steps, max_steps)) is None:
        epoch = len(history) + 1
        tick = time.perf_counter()
        model.train()
        torch.manual_seed(item_seed(seed, epoch, -1 - ctx.rank))  # dropout and drop-connect of this epoch
        train_ds.epoch = epoch
        sampler.set_epoch(epoch)
        batches = tqdm(train_loader, desc=f"fine-tune epoch {epoch}", leave=False,
                       disable=None if progress and main else True)
        loss_sum, seen, steps = _train_epoch(model, batches, optimizer, scaler, autocast, dev, crop, ctx.distributed,
                                             skipped, steps, max_steps)
        train_seconds = time.perf_counter() - tick
        correct, total, val_loss = _evaluate(net, val_loader, dev, autocast, skipped)
        parts = gather_objects((float(loss_sum), seen, correct, total, val_loss), ctx)
        n_train, n_val = sum(p[1] for p in parts), sum(p[3] for p in parts)
        train_loss = sum(p[0] for p in parts) / max(n_train, 1)
        top1 = sum(p[2] for p in parts) / n_val if n_val else None
        vloss = sum(p[4] for p in parts) / n_val if n_val else None
        score = [top1, -vloss] if n_val else [-train_loss]
        if math.isfinite(train_loss) and (best_score is None or score > best_score):
            best_epoch, best_score, best = epoch, score, _cpu_copy(body.state_dict())
        history.append({"epoch": epoch, "steps": steps, "train_loss": train_loss, "val_top1": top1, "val_loss": vloss,
                        "train_images": n_train, "train_seconds": round(train_seconds, 3),
                        "seconds": round(time.perf_counter() - tick, 3)})
        if main:
            logger.info("epoch %d: train loss %.4f, val top-1 %s (best epoch %d), %.0f img/s", epoch, train_loss,
                        "n/a" if top1 is None else f"{top1:.4f}", best_epoch, n_train / max(train_seconds, 1e-9))
            save_checkpoint(ckpt, "fine-tuning", body, best, optimizer, {
                "epoch": epoch, "steps": steps, "history": history, "best_epoch": best_epoch, "best_score": best_score,
                "fingerprint": fingerprint, "scaler": scaler.state_dict() if scaler is not None else None})
            write_json(out / SUMMARY_FILE, {**summary, "history": history, "best_epoch": best_epoch})
    if reason == "non-finite loss" and main:
        logger.warning("the training loss became non-finite at epoch %d; keeping epoch %d", len(history), best_epoch)
    body.load_state_dict(best)
    body.requires_grad_(False)
    body.eval()
    digests = gather_objects(digest(body.state_dict()), ctx)
    if len(set(digests)) > 1:
        raise RuntimeError(f"the {ctx.world_size} processes ended with different weights {digests}; "
                           "this is a bug in the distributed set-up")
    n_skipped = len(set().union(*gather_objects(skipped, ctx)))
    best_row = history[best_epoch - 1] if best_epoch else {}
    summary.update(history=history, best_epoch=best_epoch, best_val_top1=best_row.get("val_top1"), stopped=reason,
                   skipped_images=n_skipped, seconds=round(time.perf_counter() - start, 3),
                   weights=str(out / WEIGHTS_FILE), weights_digest=digests[0], finished=True)
    if main:
        save_tensors(out / WEIGHTS_FILE, {k: v.detach().clone() for k, v in backbone.full_state_dict().items()},
                     metadata={"backbone": backbone.name, "base_weights": str(backbone.weights),
                               "finetuned_on": str(data_dir), "best_epoch": str(best_epoch)})
        write_json(out / SUMMARY_FILE, summary)
        ckpt.unlink(missing_ok=True)
        logger.info("fine-tuned %s: best epoch %d (val top-1 %s), stopped by %s; weights in %s", backbone.name,
                    best_epoch, summary["best_val_top1"], reason, out / WEIGHTS_FILE)
    barrier(ctx)
    return summary
