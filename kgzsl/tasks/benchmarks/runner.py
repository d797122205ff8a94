"""``kgzsl benchmark NAME``: find or train the runs a benchmark needs, run it, print and save it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kgzsl.errors import InputError, NotFoundError
from kgzsl.utils.io import check_output_file, write_json
from kgzsl.utils.paths import shipped_dir

__all__ = ["ensure_runs", "format_rows", "run_benchmark", "BENCHMARKS"]

logger = logging.getLogger(__name__)

BENCHMARKS = ("fmnist", "imagenet-heldout", "speed", "photos")
_CONFIGS = shipped_dir("configs")


def ensure_runs(models: list[str], runs_dir: Path, progress: bool = True) -> dict[str, Path]:
    """``runs_dir/<model>`` for each model, trained from ``configs/<model>.yaml`` when missing (graph included)."""
    from kgzsl.training.config import load_config
    from kgzsl.training.run import train_run

    runs = {}
    for model in models:
        run = runs_dir / model
        config_file = _CONFIGS / f"{model}.yaml"
        if (run / "run.json").is_file():
            summary = json.loads((run / "run.json").read_text())
            # a shipped config's name (dgp-sgcn) may differ from its model's (dgp+sgcn)
            expected = load_config(config_file).model.name if config_file.is_file() else model
            if summary.get("model") != expected:
                problem = f"{run} holds a {summary.get('model')} run, not {expected}"
                raise InputError(f"{problem}; pass another runs_dir", cli_message=f"{problem}; pass another --runs-dir")
            logger.info("using the trained %s run in %s", model, run)
        else:
            if not config_file.is_file():
                shipped = ", ".join(sorted(c.stem for c in _CONFIGS.glob("*.yaml")))
                told = f"no run in {run} and no shipped config {model!r} to train one"
                raise NotFoundError(f"{told}: name shipped configs ({shipped}) in models, or put a run at {run}",
                                    cli_message=f"{told}: give --models shipped configs ({shipped}), or put a run "
                                    f"at {run} (--runs-dir)")
            logger.info("no %s run in %s: training one from %s", model, run, config_file)
            train_run(load_config(config_file), out_dir=run, progress=progress, build_graph=True)
        runs[model] = run
    return runs


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of flat benchmark rows."""
    metrics = [k for k in ("top1", "mean_per_class", "seen", "unseen", "harmonic", "gamma", "largest_class_share",
                           "mean_confidence", "ece",
                           "mean_cosine", "hit1", "hit5", "val_cosine") if any(k in r for r in rows)]
    width = max([15] + [len(str(r["method"])) for r in rows])
    header = f"{'method':<{width}} {'kind':<9} {'setting':<9} " + " ".join(f"{m:>14}" for m in metrics)
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = " ".join(f"{r[m]:>14.3f}" if isinstance(r.get(m), float) else f"{'':>14}" for m in metrics)
        lines.append(f"{r['method']:<{width}} {r['kind']:<9} {r['setting']:<9} {cells}")
    return "\n".join(lines)


def run_benchmark(name: str, models: list[str], runs_dir: Path, out_dir: Path, json_path: Path | None = None,
                  limit_per_class: int | None = None, progress: bool = True, device: str = "auto",
                  as_json: bool = False, data_dir: Path | None = None, run_dir: Path | None = None,
                  ensemble: bool = False) -> str:
    """Run a benchmark and return its printed report (its result as JSON text if ``as_json``).

    ``json_path``, if given, also receives the result as JSON. ``photos`` needs ``data_dir`` and
    scores ``run_dir`` (the demo's run, trained when missing, by default). ``ensemble``:
    ``imagenet-heldout`` also scores the models together (the normalised mean of their rows).

    Raises:
        kgzsl.errors.OutputError: If ``json_path`` is a folder or cannot be written (checked first).
    """
    if json_path is not None:
        check_output_file(json_path, example="result.json")  # before the work, not after it
    if name == "photos":
        report, result = _photos(data_dir, run_dir, progress, device)
    else:
        report, result = _run(name, models, runs_dir, out_dir, limit_per_class, progress, device, ensemble)
    if json_path is not None:
        write_json(json_path, result)
    return json.dumps(result, indent=2) if as_json else report


def _run(name: str, models: list[str], runs_dir: Path, out_dir: Path, limit_per_class: int | None, progress: bool,
         device: str, ensemble: bool = False) -> tuple[str, dict[str, Any]]:
    import time

    if name not in BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    start = time.perf_counter()
    if name == "speed":
        from kgzsl.tasks.benchmarks.speed import run_speed

        from kgzsl.training.config import DEMO_CONFIG

        run_dir = next((runs_dir / n for n in (DEMO_CONFIG, "dgp") if (runs_dir / n / "run.json").is_file()),
                       runs_dir / "dgp")  # the head of the demo's run when there is one
        result = run_speed(run_dir=run_dir, progress=progress)
        result["seconds"] = round(time.perf_counter() - start, 1)
        report = "speed (B3), one run on this machine:\n" + "\n".join(f"  {k:<40} {v}" for k, v in result.items())
        return report, result
    if name == "imagenet-heldout":
        result = _heldout(models, device, progress, ensemble)
        result["seconds"] = round(time.perf_counter() - start, 1)
        return ("ImageNet-1k held-out rows (B2): weight-space metrics of the hidden classes' predicted rows\n"
                + format_rows([{**r, "setting": r["split"]} for r in result["rows"]])
                + "\n\nrandom splits, mean ± std over seeds:\n"
                + "\n".join(f"{s['method']:<9} mean cosine {s['mean_cosine']:.3f} ± {s['mean_cosine_std']:.3f}  "
                            f"hit@1 {s['hit1']:.3f} ± {s['hit1_std']:.3f}  hit@5 {s['hit5']:.3f} ± {s['hit5_std']:.3f}"
                            for s in result["summary"])
                + f"\ntook {result['seconds']:.1f}s (training and scoring every split)"), result
    runs = ensure_runs(models, runs_dir, progress)
    from kgzsl.tasks.benchmarks.fmnist import run_fmnist

    result = run_fmnist(runs, out_dir, progress=progress, limit_per_class=limit_per_class)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["runs"] = {k: str(v) for k, v in runs.items()}
    report = (f"Fashion-MNIST zero-shot (B1): {result['n_images']} test images, runs "
              f"{', '.join(map(str, runs.values()))}\n" + format_rows(result["rows"])
              + f"\nconfusion matrix of the best row (all-10): {result['confusion_png']}\ntook {result['seconds']:.1f}s "
              "(runs, image features and scoring)")
    return report, result


def _photos(data_dir: Path | None, run_dir: Path | None, progress: bool, device: str) -> tuple[str, dict[str, Any]]:
    import time

    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.tasks.benchmarks.photos import format_photos, photo_items, run_photos

    if data_dir is None:
        raise InputError("benchmark photos needs data_dir", cli_message="benchmark photos needs --data DIR "
                         "(an image folder with one sub-folder per class, named by a label or a wnid, and an "
                         "optional groups.tsv)")
    start = time.perf_counter()
    items = photo_items(data_dir)  # a wrong --data is reported before the run is loaded (or trained)
    if run_dir is None:
        from kgzsl.tasks.demo import DEMO_RUN, ensure_demo_run, has_demo_run

        if not has_demo_run():
            logger.warning("no RUN given: the demo's run is trained first, into %s (about 9 minutes on 2 CPU cores; "
                           "give a trained run as RUN to skip this)", DEMO_RUN)
        run_dir = ensure_demo_run()
    clf = ZeroShotClassifier.load(run_dir, device=device)
    result = run_photos(clf, data_dir, progress=progress, items=items)
    result["run"], result["seconds"] = str(run_dir), round(time.perf_counter() - start, 1)
    n = len(result["added"])
    added = f"; {n} {'class' if n == 1 else 'classes'} added as concepts (in memory, not stored in the run)" if n else ""
    calibrated = "" if result.get("score_calibration") is None else (
        f"\nthe run is calibrated on {result['score_calibration']} (kgzsl calibrate): these are predict's figures after "
        "it; photos that were among those images are not held out")
    return (f"photos: {result['images']} photo(s) of {result['classes']} class(es) in {data_dir}, run "
            f"{run_dir}{added}{calibrated}\n" + format_photos(result)
            + f"\ntook {result['seconds']:.1f}s (loading the run and scoring the photos)"), result


def _heldout(models: list[str], device: str, progress: bool, ensemble: bool = False) -> dict[str, Any]:
    from kgzsl.tasks.benchmarks.heldout import heldout_inputs, run_heldout
    from kgzsl.text.features import node_features
    from kgzsl.training.config import load_config
    from kgzsl.utils.device import resolve_device

    configs = {m: load_config(_CONFIGS / f"{m}.yaml") for m in models}
    for name, config in configs.items():
        if "+" in config.model.name:
            raise InputError(f"{name} is an ensemble ({config.model.name}): B2 trains its members apart and "
                             f"scores them together with --models {config.model.name.replace('+', ',')} --ensemble")
    first = next(iter(configs.values()))
    graph, rows, seen = heldout_inputs(first)
    x = node_features(graph, encoder=first.features.encoder, use_gloss=first.features.gloss)
    return run_heldout(graph, x, rows, seen, configs, device=resolve_device(device), progress=progress,
                       ensemble=ensemble)
