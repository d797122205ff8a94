"""The public API: ``kgzsl`` exports its pieces by name, lazily, so that ``import kgzsl`` stays cheap."""

import subprocess
import sys
from pathlib import Path

import pytest

import kgzsl

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", kgzsl.__all__)
def test_every_exported_name_resolves(name):
    value = getattr(kgzsl, name)
    assert value is not None and name in dir(kgzsl)
    if name != "__version__":
        assert value.__name__ == name and value.__module__.startswith("kgzsl.")


def test_the_exports_are_the_library_objects():
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.graph.knowledge_graph import KnowledgeGraph

    assert kgzsl.ZeroShotClassifier is ZeroShotClassifier and kgzsl.KnowledgeGraph is KnowledgeGraph
    assert issubclass(kgzsl.KgzslError, Exception)
    assert {"ZeroShotClassifier", "load_backbone", "KnowledgeGraph", "build_wordnet_graph", "build_model",
            "train_run", "load_config", "explain", "KgzslError", "__version__"} <= set(kgzsl.__all__)
    assert isinstance(kgzsl.__version__, str) and kgzsl.__version__[0].isdigit()
    # the errors predict's and load's Raises sections name, catchable without their module paths
    from kgzsl.inference.labels import LabelError
    from kgzsl.vision.images import ImageLoadError

    assert kgzsl.LabelError is LabelError and kgzsl.ImageLoadError is ImageLoadError
    assert all(issubclass(getattr(kgzsl, name), kgzsl.KgzslError) for name in
               ("InputError", "LabelError", "ImageLoadError", "RunNotFoundError", "RunFormatError"))
    assert callable(kgzsl.ZeroShotClassifier.__call__) and kgzsl.ZeroShotClassifier.__call__ is \
        kgzsl.ZeroShotClassifier.predict


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'predict_everything'"):
        kgzsl.predict_everything  # noqa: B018


def test_import_kgzsl_loads_no_heavy_module():
    code = ("import sys, kgzsl; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'PIL', "
            "'yaml'}), sorted(m for m in sys.modules if m.startswith('kgzsl')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] ['kgzsl', 'kgzsl._version']"
