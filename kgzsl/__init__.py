"""kgzsl: knowledge-graph zero-shot image recognition.

A graph network propagates classifier weights over WordNet from the classes a frozen CNN was
trained on to classes it never saw; the predicted rows plug into that CNN as new classifier rows.

Example:
    >>> import kgzsl
    >>> clf = kgzsl.ZeroShotClassifier.load("runs/dgp")
    >>> clf("cat.jpg", candidate_labels=["cat", "dog", "okapi"], top_k=2)
    [{'label': 'cat', 'wnid': 'n02121620', 'synset': 'cat.n.01', 'score': 0.93}, ...]

The names below are imported on first use, so ``import kgzsl`` (and ``kgzsl --help``) stays cheap.
"""

from importlib import import_module

from kgzsl._version import __version__

#: public name -> the module that defines it (imported lazily by :func:`__getattr__`)
_EXPORTS = {
    "ZeroShotClassifier": "kgzsl.inference.classifier",
    "load_backbone": "kgzsl.vision.backbones",
    "KnowledgeGraph": "kgzsl.graph.knowledge_graph",
    "build_wordnet_graph": "kgzsl.graph.build",
    "build_model": "kgzsl.models",
    "load_config": "kgzsl.training.config",
    "train_run": "kgzsl.training.run",
    "explain": "kgzsl.tasks.explain",
    "KgzslError": "kgzsl.errors",
    # the errors predict and load raise, to catch one kind without the module paths
    "InputError": "kgzsl.errors",
    "LabelError": "kgzsl.inference.labels",
    "ImageLoadError": "kgzsl.vision.images",
    "RunNotFoundError": "kgzsl.inference.run_folder",
    "RunFormatError": "kgzsl.inference.run_folder",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kgzsl' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
