"""Ablation on B2 (held-out ImageNet-1k rows): node text, text encoder, loss and a DGP+SGCN ensemble.

Each variant trains on every B2 split (3 random splits of 200 hidden rows, seeds 0-2, and the
217-class subtree split) through :func:`kgzsl.tasks.benchmarks.heldout.run_heldout`, from the
shipped config ``configs/<model>.yaml`` with one thing changed. The figure to choose a default by is
``val_cosine``, the mean cosine on the validation rows (seen rows kept out of training; never the
hidden ones); the hidden rows' hit@1 is the test figure, reported beside it.

One variant per call, appended to the JSON file, so a long ablation can be run in pieces:

    python scripts/ablation_heldout.py --variant base --out ablation.json
    python scripts/ablation_heldout.py --table ablation.json

Every variant's JSON keeps all its rows: ConSE's and each model's (and the ensemble's).

Variants: ``base`` (MiniLM on lemma names, sum of squares), ``gloss``, ``wordllama``,
``glove`` (GloVe 6B 50-d), ``minilm+glove`` (both, concatenated), ``loss-cosine``,
``loss-rank``, ``ensemble`` (DGP and SGCN, the normalised mean of their rows), and the
combinations ``gloss-ensemble``, ``gloss-minilm+glove``, ``gloss-cosine``, ``gloss-rank``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
VARIANTS = {  # name → (encoders, gloss, loss, models)
    "base": (["minilm"], False, "sse", ["dgp"]),
    "gloss": (["minilm"], True, "sse", ["dgp"]),
    "wordllama": (["wordllama"], False, "sse", ["dgp"]),
    "glove": (["glove-6b-50d"], False, "sse", ["dgp"]),
    "minilm+glove": (["minilm", "glove-6b-50d"], False, "sse", ["dgp"]),
    "loss-cosine": (["minilm"], False, "cosine", ["dgp"]),
    "loss-rank": (["minilm"], False, "rank", ["dgp"]),
    "ensemble": (["minilm"], False, "sse", ["dgp", "sgcn"]),
    "gloss-ensemble": (["minilm"], True, "sse", ["dgp", "sgcn"]),
    "gloss-minilm+glove": (["minilm", "glove-6b-50d"], True, "sse", ["dgp"]),
    "gloss-cosine": (["minilm"], True, "cosine", ["dgp"]),
    "gloss-rank": (["minilm"], True, "rank", ["dgp"]),
}


def run_variant(name: str, device: str, subtrees: bool = True) -> dict:
    from kgzsl.tasks.benchmarks.heldout import heldout_inputs, heldout_splits, run_heldout
    from kgzsl.text.features import node_features
    from kgzsl.training.config import load_config

    encoders, gloss, loss, models = VARIANTS[name]
    configs = {m: load_config(CONFIGS / f"{m}.yaml", [f"train.loss={loss}"]) for m in models}
    graph, rows, seen = heldout_inputs(next(iter(configs.values())))
    parts = [node_features(graph, encoder=e, use_gloss=gloss) for e in encoders]
    x = parts[0] if len(parts) == 1 else F.normalize(torch.cat([F.normalize(p, dim=1) for p in parts], 1), dim=1)
    splits = heldout_splits(graph, seen)
    if not subtrees:
        splits.pop("subtrees")
    start = time.perf_counter()
    result = run_heldout(graph, x, rows, seen, configs, device=device, progress=False,
                         splits=splits, ensemble=len(models) > 1)
    return {"variant": name, "encoders": encoders, "gloss": gloss, "loss": loss, "rows": result["rows"],
            "seconds": round(time.perf_counter() - start, 1)}


def table(entries: list[dict]) -> str:
    lines = ["| variant | method | validation cosine (3 random splits) | random-200 hit@1 | hit@5 | mean cosine | "
             "subtrees hit@1 | hit@5 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        for method in dict.fromkeys(r["method"] for r in e["rows"]):
            rows = [r for r in e["rows"] if r["method"] == method]
            rnd = [r for r in rows if r["split"].startswith("random")]
            sub = [r for r in rows if r["split"] == "subtrees"]

            def ms(key: str) -> str:
                v = [r[key] for r in rnd if key in r]
                if not v:
                    return "—"
                return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"

            tail = f"{sub[0]['hit1']:.3f} | {sub[0]['hit5']:.3f}" if sub else "— | —"
            lines.append(f"| {e['variant']} | {method} | {ms('val_cosine')} | {ms('hit1')} | {ms('hit5')} | "
                         f"{ms('mean_cosine')} | {tail} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("ablation.json"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-subtrees", action="store_true", help="only the 3 random splits")
    parser.add_argument("--table", type=Path, help="print the table of a JSON file written by earlier calls")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    entries = json.loads(args.out.read_text()) if args.out.is_file() else []
    entries = [e for e in entries if e["variant"] != args.variant] + [run_variant(args.variant, args.device, not args.no_subtrees)]
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    tmp.replace(args.out)
    print(table(entries))


if __name__ == "__main__":
    main()
