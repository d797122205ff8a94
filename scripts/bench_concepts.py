"""Time concepts at scale on a trained run: add 1,000 from a file, load the run, add one more.

Usage::

    python scripts/bench_concepts.py RUN [--count 1000] [--work DIR]

RUN is copied into a temporary folder (or ``--work``) first and never modified. A taxonomy of
``--count`` classes of your own is generated (seeded) under WordNet nodes of the run's graph, each
with a description, every tenth under the previous one. Printed (seconds, wall clock):

- ``add_file``: ``add_concepts`` of the whole file plus storing the rows, run already loaded;
- ``cli_add_file``: the same as ``python -m kgzsl add-concept COPY --file`` (process start included);
- ``load``: ``ZeroShotClassifier.load`` of the run holding the concepts (backbone included);
- ``cli_load``: a fresh ``python`` process importing kgzsl and loading the run;
- ``one_more_first`` / ``one_more_next``: one more concept right after loading (the model, graph and
  text encoder load on that first addition) and another one after it, each with storing;
- ``cli_one_more``: ``python -m kgzsl add-concept COPY WORD --parents ...`` in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _taxonomy(run: Path, count: int, seed: int = 0) -> list[dict]:
    from kgzsl.graph.graph_folder import read_nodes

    wnids, names, _, _ = read_nodes(run / "nodes.tsv")
    rng = random.Random(seed)
    parents = rng.sample([n for w, n in zip(wnids, names) if w.startswith("n")], 200)
    entries = []
    for i in range(count):
        parent = [parents[i % len(parents)]] + ([f"catalogue item {i - 1}"] if i % 10 else [])
        entries.append({"name": f"catalogue item {i}", "parents": parent,
                        "description": f"product {i} of a shop catalogue, a kind of {parent[0].split('.')[0]}"})
    return entries


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, HF_HUB_OFFLINE="1",
                                                                         TRANSFORMERS_OFFLINE="1"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--work", help="folder for the copies (default: a temporary folder, removed after)")
    args = parser.parse_args()
    import yaml

    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.inference.concept_store import store_concepts

    work = Path(args.work or tempfile.mkdtemp(prefix="kgzsl-bench-concepts-"))
    out: dict[str, float | int | str] = {"count": args.count, "run": args.run}
    try:
        copy, cli_copy = work / "run", work / "run_cli"
        for target in (copy, cli_copy):
            shutil.copytree(args.run, target)
        file = work / "taxonomy.yaml"
        file.write_text(yaml.safe_dump(_taxonomy(copy, args.count), sort_keys=False))
        py = [sys.executable, "-m", "kgzsl", "-q"]

        clf = ZeroShotClassifier.load(copy, device="cpu")
        start = time.perf_counter()
        report = clf.add_concepts(file)
        store_concepts(clf)
        out["add_file"] = time.perf_counter() - start
        out["new_nodes"] = report.new_nodes
        out["cli_add_file"] = _timed(py + ["add-concept", str(cli_copy), "--file", str(file), "--device", "cpu"])

        start = time.perf_counter()
        clf = ZeroShotClassifier.load(copy, device="cpu")
        out["load"] = time.perf_counter() - start
        assert len(clf.added_wnids) == report.new_nodes
        out["cli_load"] = _timed([sys.executable, "-c", "import sys; from kgzsl.inference.classifier import "
                                  "ZeroShotClassifier as Z; Z.load(sys.argv[1], device='cpu')", str(copy)])
        for key, name in (("one_more_first", "solar-powered backpack"), ("one_more_next", "standing desk")):
            start = time.perf_counter()
            clf.add_concept(name, parents=["backpack.n.01" if "backpack" in name else "desk.n.01"])
            store_concepts(clf)
            out[key] = time.perf_counter() - start
        out["cli_one_more"] = _timed(py + ["add-concept", str(cli_copy), "air fryer", "--parents", "kitchen appliance",
                                           "--description", "a countertop convection oven", "--device", "cpu"])
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
