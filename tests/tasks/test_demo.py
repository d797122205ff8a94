"""``kgzsl demo``'s checks before its ten minutes of training."""

from __future__ import annotations

import pytest

from kgzsl.errors import MissingPackageError


def test_without_the_demo_photos_the_demo_stops_before_training(monkeypatch, tmp_path):
    from kgzsl.tasks import demo

    trained = []
    monkeypatch.setattr(demo, "demo_photos", lambda: [])  # neither scikit-image nor scikit-learn nor matplotlib
    monkeypatch.setattr(demo, "ensure_demo_run", lambda *args: trained.append(args))
    with pytest.raises(MissingPackageError, match=r"pip install 'kgzsl\[demo\]'"):
        demo.run_demo(out_dir=tmp_path / "run")
    assert not trained
