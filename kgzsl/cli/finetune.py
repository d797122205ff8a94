"""The ``kgzsl finetune`` subcommand: DGP stage 2, fine-tuning the backbone under a run's rows.

Run it as ``kgzsl finetune RUN --data DIR``, or on several GPUs / CPU processes with
``torchrun --nproc_per_node N -m kgzsl finetune RUN --data DIR`` (only rank 0 prints).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

from kgzsl.cli._common import nonnegative_int, positive_int

__all__ = ["add_finetune_parser"]


def _cmd_finetune(args: argparse.Namespace) -> int:
    from kgzsl.tasks.finetune import finetune_run

    rank = int(os.environ.get("RANK", "0") or 0)
    if rank != 0:  # every process logs its warnings; only rank 0 reports progress
        logging.getLogger().setLevel(logging.WARNING)
    try:
        result = finetune_run(args.run, args.data, epochs=args.epochs, patience=args.patience, lr=args.lr,
                              batch_size=args.batch_size, val_fraction=args.val_fraction, seed=args.seed,
                              device=args.device, workers=args.workers, train_bn=args.train_bn, resume=args.resume,
                              progress=not (args.no_progress or args.quiet), max_steps=args.max_steps)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (the kgzsl command raises it as an interruption too)
        if rank == 0:  # the command says which signal, with the --resume hint, and exits 130 or 143
            raise
        return 128 + getattr(exc, "signum", signal.SIGINT)  # the other ranks end quietly
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        top1 = result.get("best_val_top1")
        epochs = len(result.get("history", []))
        print(f"fine-tuned {result['backbone']} on {result['classes']} classes ({result['train_images']} training "
              f"images, {result['processes']} process(es)): best epoch {result['best_epoch']} of {epochs}, "
              f"validation top-1 {'n/a' if top1 is None else f'{top1:.2%}'}, stopped by {result['stopped']}; "
              f"weights {result['weights']} (used by predict and evaluate from now on)")
    return 0


def add_finetune_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` subcommand to the ``kgzsl`` parser's subparsers ``sub``."""
    p = sub.add_parser("finetune", help="fine-tune the backbone under the run's predicted rows (DGP stage 2)")
    p.add_argument("run", help="run folder written by `kgzsl train`; outputs go to RUN/finetune/")
    p.add_argument("--data", required=True, help="image folder of seen classes, one sub-folder per wnid")
    p.add_argument("--epochs", type=positive_int, default=10, help="at most this many epochs (default 10)")
    p.add_argument("--patience", type=positive_int, default=2,
                   help="stop after this many epochs without a validation top-1 gain (default 2)")
    p.add_argument("--lr", type=float, default=1e-4, help="SGD learning rate (default 1e-4, momentum 0.9)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step, over all processes (default 64)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of each class's images held out for validation (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, data order and augmentation")
    p.add_argument("--workers", type=nonnegative_int, help="image-decoding processes per training process (default: by CPU count)")
    p.add_argument("--device", default="auto")
    p.add_argument("--train-bn", action="store_true", help="also train BatchNorm statistics (default: frozen)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tune (same settings)")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many optimiser steps (quick trials)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_finetune)
