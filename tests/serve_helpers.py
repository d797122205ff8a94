"""Helpers shared by the serving tests: the tiny run's classifier (loaded once), bundled photos as bytes."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")

from kgzsl.inference.classifier import ZeroShotClassifier  # noqa: E402
from kgzsl.vision.samples import demo_photos  # noqa: E402

#: candidate labels every node of the tiny run's graph (tests/conftest.py TINY_WNIDS) can answer
LABELS = ["tabby", "tench", "airliner", "golden retriever"]


@functools.lru_cache(maxsize=None)
def tiny_classifier(run: Path) -> ZeroShotClassifier:
    """The tiny run's classifier on the CPU, loaded once per test session (the tests do not change it)."""
    return ZeroShotClassifier.load(run, device="cpu")


def photo(name: str) -> Path:
    """A bundled photo (kgzsl.vision.samples) by file name, e.g. ``chelsea.png``."""
    found = [p for p in demo_photos() if p.name == name]
    if not found:
        pytest.skip(f"the photo {name} is not installed (pip install -e '.[demo]')")
    return found[0]
