"""Helpers shared by the serving tests: the tiny run's classifier (loaded once), bundled photos as bytes."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")

from kgzsl.inference.classifier import ZeroShotClassifier  # noqa: E402
from kgzsl.vision.samples import demo_photos  # noqa: E402

#: candidate labels every node of the tiny run's graph (tests/conftest.py TINY_WNIDS) can answer
LABELS = ["tabby", "tench", "airliner", "golden retriever"]


@functools.lru_cache(maxsize=None)
def tiny_classifier(run: Path) -> ZeroShotClassifier:
    """The tiny run's classifier on the CPU, loaded once per test session; labels it adds on first use
    ("hammerhead") stay in memory, so the session's tiny run is the same for every other test."""
    clf = ZeroShotClassifier.load(run, device="cpu")
    clf.store_added_labels = False
    return clf


def photo(name: str) -> Path:
    """A bundled photo (kgzsl.vision.samples) by file name, e.g. ``chelsea.png``."""
    found = [p for p in demo_photos() if p.name == name]
    if not found:
        pytest.skip(f"the photo {name} is not installed (pip install -e '.[demo]')")
    return found[0]


def same_predictions(got: list[dict], expected: list[dict]) -> bool:
    """The same labels in the same order, scores equal up to float rounding.

    A request runs on one of the server's worker threads, where torch may use another number of
    intra-op threads than the test's thread, so sums can differ in the last digit; a race between
    requests would show as other labels or scores.
    """
    def names(predictions: list[dict]) -> list[tuple]:
        return [(p["label"], p["wnid"], p["synset"]) for p in predictions]

    return names(got) == names(expected) and \
        np.allclose([p["score"] for p in got], [p["score"] for p in expected], rtol=0, atol=1e-5)
