"""The ``kgzsl`` command: train, predict, evaluate, benchmark, demo, and the subcommands of
:mod:`kgzsl.cli.graph` (build-graph), :mod:`kgzsl.cli.vocab` (explain, index, search, add-concept,
calibrate), :mod:`kgzsl.cli.finetune` and :mod:`kgzsl.cli.serve`.

Each subcommand is a small function over the library; heavy imports happen inside them so that
``kgzsl --help`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

from kgzsl._version import __version__
from kgzsl.cli._common import add_extraction_args, add_original_backbone_arg, extraction_job, format_table, label_list, positive_int, printable, \
    quiet_third_party, setup_logging
from kgzsl.cli.finetune import add_finetune_parser
from kgzsl.cli.graph import add_graph_parser
from kgzsl.cli.serve import add_serve_parser, run_serve_benchmark
from kgzsl.cli.vocab import add_vocabulary_parsers
from kgzsl.errors import InputError, KgzslError
from kgzsl.utils.signals import interruption_of

__all__ = ["main", "build_parser"]

logger = logging.getLogger("kgzsl.cli")


def _cmd_train(args: argparse.Namespace) -> int:
    from kgzsl.training.config import load_config
    from kgzsl.training.run import train_run

    overrides = list(args.overrides)
    if args.holdout is not None:
        value = args.holdout
        try:
            overrides.append(f"train.holdout={float(value)}")
        except ValueError:
            items = Path(value).read_text().split() if Path(value).is_file() else value.split(",")
            overrides.append(f"train.holdout=[{','.join(items)}]")
    if args.holdout_seed is not None:
        overrides.append(f"train.holdout_seed={args.holdout_seed}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    config = load_config(args.config, overrides)
    out = train_run(config, out_dir=args.out, progress=not (args.no_progress or args.quiet), resume=args.resume)
    summary = json.loads((out / "run.json").read_text())
    for fitted in summary.get("members", [summary]):  # an ensemble: each member, then the ensemble
        score = fitted.get("best_val_cosine")
        if "remembers" in fitted:  # nothing to train (ConSE): validated on the training rows, then keeps all
            print(f"run {out}: {fitted['model']} has nothing to train: "
                  + (f"validation cosine {score:.4f} from the training rows, " if score is not None else "")
                  + f"then remembers all {fitted['remembers']} seen rows")
            continue
        best = f"best validation cosine {score:.4f}" if score is not None else \
            "no validation rows: lowest training loss"
        print(f"run {out}: {fitted['model']} {best} at epoch {fitted['best_epoch']} ({fitted['epochs_run']} epochs, "
              f"{fitted['seconds_per_epoch']:.3f}s/epoch, {fitted['seconds_to_best']:.1f}s to best)")
    if "members" in summary and summary.get("best_val_cosine") is not None:
        print(f"run {out}: {summary['model']} (normalised mean of the members' rows) validation cosine "
              f"{summary['best_val_cosine']:.4f}")
    resumed = any(m.get("resumed_from_epoch") for m in summary.get("members", [summary]))
    print(f"run {out}: {summary['total_seconds']:.1f}s total" + (" in this session (resumed; the times to best "
                                                                  "above count the earlier sessions too)" if resumed else ""))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from kgzsl.inference.classifier import ZeroShotClassifier

    clf = ZeroShotClassifier.load(args.run, device=args.device, finetuned=not args.original_backbone)
    clf.max_pixels = args.max_pixels
    clf.adapt_to_images = not args.no_adapt
    if args.concept_file:
        from kgzsl.inference.concepts import load_concepts

        load_concepts(clf, args.concept_file)
    labels = label_list(args.labels, "to rank every class the graph was built for")
    paths, empty = _image_paths(args.images)
    records = clf.predict_detailed([p for p in paths if p not in empty], labels, top_k=args.top_k,
                                   abstain=args.abstain) if len(empty) < len(paths) else []
    if empty:  # in the order given, each folder without images one failed record
        found = iter(records)
        records = [{"image": p, "error": empty[p]} if p in empty else next(found) for p in paths]
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(format_table(records))
    failed = sum("error" in r for r in records)
    if failed:
        print(f"{failed} of {len(records)} images failed", file=sys.stderr)
    return 1 if failed else 0


def _image_paths(given: list[str]) -> tuple[list[str], dict[str, str]]:
    """The images ``predict`` classifies: files as given, a folder replaced by the image files in it
    (recursively, in path order). A folder without any stays, with the error its record reports (the
    second value), so that the other images are still classified, as for a missing or unreadable file."""
    from kgzsl.vision.folders import IMAGE_EXTENSIONS, list_images

    paths: list[str] = []
    empty: dict[str, str] = {}
    for item in given:
        inside = list_images(item) if Path(item).is_dir() else []
        if Path(item).is_dir() and not inside:
            kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
            empty[item] = (f"cannot load image {item}: it is a folder without image files (looked for {kinds} "
                           "in any case, in sub-folders too); pass image files, or a folder holding some")
        paths += [str(p) for p in inside] or [item]
    return paths, empty


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from kgzsl.utils.distributed import close_distributed
    from kgzsl.tasks.evaluate import evaluate_run, format_result

    ctx, workers, amp = extraction_job(args)
    try:
        result = evaluate_run(args.run, args.data, split=args.split, generalized=args.generalized, gamma=args.gamma,
                              val_dir=args.val, device=ctx.device, progress=not args.quiet, batch_size=args.batch_size,
                              num_workers=workers, amp=amp, dist_ctx=ctx, scoring=args.scoring,
                              finetuned=not args.original_backbone)
    finally:
        close_distributed(ctx)
    if ctx.is_main:
        print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


#: the options of `kgzsl benchmark` that only some benchmarks read (the others would ignore them silently)
_BENCHMARK_OPTIONS = {"run": ("serve", "photos"), "models": ("fmnist", "imagenet-heldout"),
                      "limit_per_class": ("fmnist",), "ensemble": ("imagenet-heldout",), "data": ("photos",),
                      "clients": ("serve",), "seconds": ("serve",), "labels": ("serve",)}


def _cmd_benchmark(args: argparse.Namespace) -> int:
    if args.run_option is not None:  # `--run RUN` is the positional RUN spelt as an option
        if args.run is not None and args.run != args.run_option:
            raise InputError(f"the run is given twice, {args.run!r} and --run {args.run_option!r}; give it once")
        args.run = args.run_option
    unused = [key for key, names in _BENCHMARK_OPTIONS.items()
              if args.name not in names and getattr(args, key) not in (None, False)]
    if unused:
        told = ", ".join("RUN" if key == "run" else "--" + key.replace("_", "-") for key in unused)
        raise InputError(f"benchmark {args.name} does not use {told}: "
                         + "; ".join(f"{'RUN' if key == 'run' else '--' + key.replace('_', '-')} is for "
                                     f"{' and '.join(_BENCHMARK_OPTIONS[key])}" for key in unused))
    args.models = args.models or "gcnz,sgcn,dgp"
    _json_targets(args)
    if args.name == "serve":  # starts a server: it lives above the tasks layer
        print(run_serve_benchmark(args))
        return 0
    from kgzsl.tasks.benchmarks.runner import run_benchmark

    print(run_benchmark(args.name, [m.strip() for m in args.models.split(",")], Path(args.runs_dir), Path(args.out),
                        json_path=Path(args.json_out) if args.json_out else None, as_json=args.json,
                        limit_per_class=args.limit_per_class, progress=not args.quiet, device=args.device,
                        data_dir=Path(args.data) if args.data else None, run_dir=Path(args.run) if args.run else None,
                        ensemble=args.ensemble))
    return 0


def _json_targets(args: argparse.Namespace) -> None:
    """Read ``benchmark``'s --json / --json-out into ``args.json`` (print JSON, not the table) and
    ``args.json_out`` (a file, or None), checking the file before any work. ``-`` means stdout."""
    given = [(option, value) for option, value in (("--json", args.json), ("--json-out", args.json_out))
             if isinstance(value, str)]  # --json alone is True
    files = {value: option for option, value in given if value != "-"}
    if len(files) > 1:
        (first, a), (second, b) = files.items()
        raise InputError(f"two JSON files, {a} {first!r} and {b} {second!r}; give one")
    args.json = args.json is True or any(value == "-" for _, value in given)
    args.json_out = next(iter(files), None)
    if args.json_out is not None:
        from kgzsl.utils.io import check_output_file

        check_output_file(args.json_out, files[args.json_out], example="result.json")


def _cmd_demo(args: argparse.Namespace) -> int:
    from kgzsl.tasks.demo import run_demo

    print(run_demo(config_path=args.config, out_dir=args.out, retrain=args.retrain))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviated options, for the command and every subcommand: an option given
    in part must not silently mean another (``--run`` is not ``--runs-dir``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kgzsl`` command."""
    parser = _Parser(prog="kgzsl", description="Knowledge-graph zero-shot image recognition: "
                     "propagate a frozen CNN's classifier rows over WordNet to unseen classes.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--version", action="version", version=f"kgzsl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    add_graph_parser(sub)

    p = sub.add_parser("train", help="train a propagation model on the backbone's seen rows")
    p.add_argument("--config", help="run config: a YAML file, or a shipped config name (dgp-sgcn-conse, "
                   "dgp-sgcn, dgp, sgcn, gcnz, conse, dgp-reference)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3 model.name=sgcn (before or "
                   "after the options)")
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda or cuda:N; the same as train.device=...")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--holdout", help="hide seen classes from training: a fraction (0.2), wnids (a,b,c) or a file")
    p.add_argument("--holdout-seed", type=int, help="seed of the holdout draw")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from the checkpoint in its "
                   "folder (same config); gives the same result as an uninterrupted run")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", help="zero-shot classify images with a trained run")
    p.add_argument("run", help="run folder written by `kgzsl train`")
    p.add_argument("images", nargs="+", help="image files, or folders (every image file inside, recursively)")
    p.add_argument("--labels", help="comma-separated candidates: words, synset names or wnids (default: every node)")
    p.add_argument("--top-k", type=positive_int, default=5, help="predictions listed per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--max-pixels", type=positive_int, default=100_000_000,
                   help="refuse images whose header claims more pixels (checked before decoding)")
    p.add_argument("--concept-file", help="taxonomy file (YAML or CSV) of concepts to add first (docs/taxonomy.md)")
    p.add_argument("--no-adapt", action="store_true", help="on a calibrated run, keep the centred rows: do not fit "
                   "the label list to the calibration's images")
    p.add_argument("--abstain", action="store_true", help="answer 'none of these' below the run's calibrated "
                   "threshold (set by `kgzsl calibrate RUN --images DIR`)")
    add_original_backbone_arg(p)
    p.set_defaults(func=_cmd_predict)

    add_vocabulary_parsers(sub)
    add_finetune_parser(sub)
    add_serve_parser(sub)

    p = sub.add_parser("evaluate", help="hit@k of a run on an ImageNet-style folder of test images")
    p.add_argument("run", help="run folder written by `kgzsl train`")
    p.add_argument("--data", required=True, help="image folder with one sub-folder per class, named by wnid")
    p.add_argument("--split", required=True, help="unseen classes: 2-hops, 3-hops, all, or a wnid file")
    p.add_argument("--generalized", action="store_true", help="the 1,000 seen classes are candidates too")
    p.add_argument("--gamma", type=float, help="calibrated stacking: subtract this from seen-class scores")
    p.add_argument("--val", help="validation image folder to choose --gamma on (never the test folder)")
    p.add_argument("--scoring", choices=("auto", "predicted"), default="auto",
                   help="auto: as predict scores candidates (the backbone's own rows for its classes); predicted: "
                   "every candidate by its predicted row, as the GCNZ and DGP papers evaluate")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_extraction_args(p)
    add_original_backbone_arg(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("benchmark", help="run a benchmark (fmnist, imagenet-heldout, photos, speed, serve) "
                       "and print its table")
    p.add_argument("name", choices=["fmnist", "imagenet-heldout", "speed", "serve", "photos"],
                   help="fmnist: zero-shot on Fashion-MNIST (Debian dataset-fashion-mnist); imagenet-heldout: "
                   "predict hidden ImageNet-1k rows (random 200 x 3 seeds, and whole WordNet subtrees); speed: "
                   "graph build, receptive-field vs full-graph training, head overhead, memory, start-up; serve: "
                   "`kgzsl serve` under concurrent clients against in-process predict; photos: your labelled photos (--data DIR, "
                   "one sub-folder per class named by a label or a wnid), each among its group's classes")
    p.add_argument("run", nargs="?", help="serve: the run folder to serve (default RUNS_DIR/dgp); photos: the run to "
                   "score (default: the demo's, runs/demo, trained when missing)")
    p.add_argument("--run", dest="run_option", metavar="RUN", help="the same as the positional RUN")
    p.add_argument("--models", help="fmnist, imagenet-heldout: propagation models to compare (trained when missing; "
                   "default gcnz,sgcn,dgp)")
    p.add_argument("--runs-dir", default="runs", help="folder with one run per model (runs/<model>)")
    p.add_argument("--out", default="runs/benchmarks", help="where plots go")
    p.add_argument("--json", nargs="?", const=True, default=False, metavar="PATH",
                   help="print the result as JSON instead of a table; --json PATH: the table here, the JSON in PATH "
                   "(as --json-out PATH); PATH - is stdout (the same as --json alone)")
    p.add_argument("--json-out", metavar="PATH", help="also write the result as JSON to this file; - prints it "
                   "to stdout instead of the table")
    p.add_argument("--limit-per-class", type=positive_int,
                   help="fmnist: quick run on N test images per class (and at most N train images per "
                   "class, of the 200 it calibrates and centres on)")
    p.add_argument("--device", default="auto", help="imagenet-heldout trains 4 times per model: a GPU helps")
    p.add_argument("--ensemble", action="store_true",
                   help="imagenet-heldout: also score the models together (the normalised mean of their rows)")
    p.add_argument("--data", help="photos: image folder DIR/<class>/*.jpg, each sub-folder named by a label as predict "
                   "takes it (hammer, golden_retriever, crane.n.04, your own class) or by a wnid; optional "
                   "DIR/groups.tsv (class, group)")
    p.add_argument("--clients", type=positive_int, help="serve: concurrent clients (default 4)")
    p.add_argument("--seconds", type=positive_int,
                   help="serve: seconds of load, for the server and for in-process predict each (default 15)")
    p.add_argument("--labels", help="serve: comma-separated candidate labels (default: every class)")
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("demo", help="build, train (or reuse) and classify bundled photos with non-ImageNet-1k labels")
    p.add_argument("--config", default=None, help="run config: a YAML file or a shipped name (default dgp-sgcn-conse)")
    p.add_argument("--out", default=None, help="run folder (default runs/demo in the current directory)")
    p.add_argument("--retrain", action="store_true", help="train again even if the run exists")
    p.set_defaults(func=_cmd_demo)
    for command in sub.choices.values():  # `kgzsl predict -q ...` too; SUPPRESS keeps a `kgzsl -q predict` as it is
        command.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                             help="only warnings and errors")
    return parser


class _SigtermInterrupts:
    """While active, the first SIGTERM (``timeout``, ``docker stop``, systemd, Slurm) raises the
    ``KeyboardInterrupt`` Ctrl-C raises, so that it takes the same way out: atomic writes remove their
    temporary file, progress bars close, training keeps its checkpoint, DataLoader workers end quietly.
    The exception's ``signum`` says which signal it was (a plain Ctrl-C has none: SIGINT). Later
    SIGTERMs are ignored so that the clean-up they would interrupt runs to its end; ``received``
    records the first.

    Only the command installs it, for the duration of :func:`main`: importing kgzsl changes no signal
    handling. A handler set by a program that calls :func:`main` (or SIG_IGN) is left as it is.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: Any = None

    def __enter__(self) -> "_SigtermInterrupts":
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # main() called from another thread: signals are the main thread's
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
            interruption = KeyboardInterrupt()
            interruption.signum = signum  # type: ignore[attr-defined]
            raise interruption


def _interrupted(command: str, signum: int) -> int:
    """Say that ``command`` was interrupted by ``signum`` (one line) and return the shell's code for it."""
    if hasattr(signal, "SIGCHLD"):  # DataLoader workers still dying must not raise from PyTorch's handler at exit
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    hint = "; continue with the same command and --resume" if command in ("train", "finetune") else ""
    print(f"kgzsl {command}: interrupted by {signal.Signals(signum).name}{hint}", file=sys.stderr)
    return 128 + signum  # 130 for Ctrl-C, 143 for SIGTERM


_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")  # a dotted config override, key=value


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kgzsl`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # usage errors: argparse prints them and exits with 2
    if extra and getattr(args, "command", None) == "train" and all(_OVERRIDE.match(e) for e in extra):
        args.overrides = [*args.overrides, *extra]  # `--out runs/x train.lr=1e-3`: argparse stops at the option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(args.quiet)
    with _SigtermInterrupts() as sigterm, quiet_third_party(args.quiet):
        try:
            code = args.func(args)
            sys.stdout.flush()  # a closed pipe (`| head`) shows here, not as a traceback at exit
            if sigterm.received is not None and code == 0:  # the command swallowed it: uvicorn (`serve`)
                code = _interrupted(args.command, sigterm.received)  # shuts down gracefully, then returns
            return code
        except KeyboardInterrupt as exc:  # Ctrl-C, or a SIGTERM (with its signum)
            return _interrupted(args.command, getattr(exc, "signum", signal.SIGINT))
        except BrokenPipeError:  # the reader stopped reading (`kgzsl evaluate ... | head -1`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            return 128 + 13  # as a process that SIGPIPE stopped
        except KgzslError as exc:  # a problem the user can fix; anything else is a bug and keeps its traceback
            print(f"kgzsl {args.command}: error: {printable(exc.cli_text())}", file=sys.stderr)
            return 1
        except RuntimeError as exc:  # DataLoader workers killed by the signal that stops the job, before us
            # (after KgzslError: some of those are RuntimeErrors too)
            stop = interruption_of(exc)
            if stop is None:
                raise
            return _interrupted(args.command, stop.signum)  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
