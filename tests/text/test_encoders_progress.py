"""The text encoders' progress bars follow the caller's ``progress`` and the CLI's ``-q`` (``TQDM_DISABLE``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from kgzsl.text import encoders as text_encoders
from kgzsl.text.features import node_features

MANY = ["a dog"] * (text_encoders._PROGRESS_MIN + 1)


@dataclass
class FakeMiniLM:
    """Records the ``show_progress_bar`` of every ``encode`` call (what sentence-transformers draws from)."""

    bars: list[bool] = field(default_factory=list)

    def encode(self, texts, batch_size, convert_to_numpy, show_progress_bar):
        self.bars.append(show_progress_bar)
        return np.zeros((len(texts), 384), dtype=np.float32)


@pytest.fixture
def minilm(monkeypatch: pytest.MonkeyPatch) -> FakeMiniLM:
    fake = FakeMiniLM()
    monkeypatch.setattr(text_encoders, "_load_minilm", lambda device: fake)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    return fake


def test_minilm_bar_only_for_many_texts_by_default(minilm: FakeMiniLM) -> None:
    text_encoders.get_encoder("minilm").encode(MANY)
    text_encoders.get_encoder("minilm").encode(MANY[:10])
    assert minilm.bars == [True, False]


def test_minilm_bar_hidden_under_quiet(minilm: FakeMiniLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what `kgzsl -q` sets (kgzsl.cli._common.quiet_third_party)
    text_encoders.get_encoder("minilm").encode(MANY)
    assert minilm.bars == [False]


def test_minilm_bar_follows_the_callers_progress(minilm: FakeMiniLM) -> None:
    text_encoders.get_encoder("minilm", progress=False).encode(MANY)

    @dataclass
    class Graph:
        wnids: list[str]
        lemmas: list[list[str]]
        glosses: list[str]
        path: None = None

    n = len(MANY)
    graph = Graph([f"n{i:08d}" for i in range(n)], [[f"w{i}"] for i in range(n)], [""] * n)
    node_features(graph, encoder="minilm", progress=False)
    node_features(graph, encoder="minilm")
    assert minilm.bars == [False, False, True]


class FakeWordLlama:
    def embed(self, texts, norm, return_np=True):
        return np.ones((len(texts), 4), dtype=np.float32)


@pytest.mark.parametrize("env, progress", [("1", True), (None, False)])
def test_wordllama_bar_hidden_under_quiet_or_without_progress(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture, env, progress) -> None:
    monkeypatch.setattr(text_encoders, "_load_wordllama", lambda: FakeWordLlama())
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    x = text_encoders.WordLlamaEncoder(progress=progress).encode(MANY)
    assert x.shape == (len(MANY), 4)
    assert "wordllama" not in capsys.readouterr().err


def test_wordllama_bar_shown_for_many_texts(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(text_encoders, "_load_wordllama", lambda: FakeWordLlama())
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    text_encoders.WordLlamaEncoder().encode(MANY)
    assert "wordllama" in capsys.readouterr().err
