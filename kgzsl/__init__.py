"""kgzsl: knowledge-graph zero-shot image recognition.

A graph network propagates classifier weights over WordNet from the classes a frozen CNN was
trained on to classes it never saw; the predicted rows plug into that CNN as new classifier rows.
"""

from kgzsl._version import __version__

__all__ = ["__version__", "ZeroShotClassifier"]


def __getattr__(name: str):  # lazy: `import kgzsl` stays cheap for the CLI
    if name == "ZeroShotClassifier":
        from kgzsl.inference.classifier import ZeroShotClassifier

        return ZeroShotClassifier
    raise AttributeError(f"module 'kgzsl' has no attribute {name!r}")
