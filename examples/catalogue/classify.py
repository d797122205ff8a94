"""Add the catalogue's product categories to a trained run (in memory) and classify the bundled photos.

    python examples/catalogue/classify.py runs/dgp

The run folder is not changed (``kgzsl add-concept RUN --file taxonomy.yaml`` would store them in it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kgzsl.cli._common import format_table
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.vision.samples import demo_photos

HERE = Path(__file__).resolve().parent
# the catalogue's categories next to a few everyday words, so the photos have something true to pick
LABELS = ["e-scooter", "e-bike", "solar-powered backpack", "standing desk", "espresso machine", "air fryer",
          "robot vacuum", "smart speaker", "drone", "bubble tea", "cat", "rocket", "flower", "temple", "man"]


def main(run: str) -> None:
    clf = ZeroShotClassifier.load(run, device="cpu")
    start = time.perf_counter()
    report = clf.add_concepts(HERE / "taxonomy.yaml")
    print(f"added {len(report.added)} catalogue categories ({report.new_nodes} new nodes) in "
          f"{time.perf_counter() - start:.1f}s; {len(report.existing)} were nodes already")
    print(format_table(clf.predict_detailed(demo_photos(), LABELS, top_k=3)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/dgp")
