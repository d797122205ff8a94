"""Real photos that ship inside installed wheels (scikit-image, scikit-learn, matplotlib).

The demo classifies them, the speed benchmark times prediction on them, and tests use them: they
are real colour photos that need no download.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

__all__ = ["demo_photos"]

logger = logging.getLogger(__name__)

_PHOTOS = [("skimage", "data/chelsea.png"), ("skimage", "data/coffee.png"), ("skimage", "data/rocket.jpg"),
           ("skimage", "data/motorcycle_left.png"), ("skimage", "data/astronaut.png"),
           ("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg"),
           ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")]


def demo_photos() -> list[Path]:
    """Real photos bundled in installed wheels (those whose package is installed)."""
    found = []
    for package, rel in _PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            logger.warning("package %s is not installed: skipping its photo %s (pip install 'kgzsl[demo]')",
                           package, rel)
            continue
        path = Path(spec.origin).parent / rel
        if path.is_file():
            found.append(path)
    return found
