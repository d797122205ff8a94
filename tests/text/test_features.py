"""Tests for kgzsl.text.features: GloVe streaming, node texts, cached node features, real encoders."""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from kgzsl.text import encoders as text_encoders
from kgzsl.text.features import GloveEncoder, get_encoder, node_features, node_texts

GLOVE = """dog 1 0 0
domestic 0 1 0
Canis 0 0 2
canis 9 9 9
retriever 3 3 0
golden 1 1 1
"""


@pytest.fixture
def glove(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(GLOVE)
    return path


@dataclass
class FakeGraph:
    wnids: list[str]
    lemmas: list[list[str]]
    glosses: list[str]
    path: Path | None = None


def make_graph(path: Path | None) -> FakeGraph:
    return FakeGraph(
        wnids=["n02084071", "n02099601", "n99999999"],
        lemmas=[["dog", "domestic_dog", "Canis_familiaris"], ["golden_retriever"], ["xyzzy"]],
        glosses=["a member of the genus Canis", "an English breed", "nothing"],
        path=path,
    )


def test_glove_exact_means(glove: Path) -> None:
    enc = GloveEncoder(glove)
    assert enc.dim == 3
    out = enc.encode(["dog", "domestic dog", "golden_retriever", "Canis", "CANIS dog", "xyzzy", ""])
    assert out.dtype == torch.float32 and out.shape == (7, 3)
    expected = torch.tensor([
        [1, 0, 0],
        [0.5, 0.5, 0],
        [2, 2, 0.5],           # mean of golden (1,1,1) and retriever (3,3,0)
        [0, 0, 2],             # exact "Canis" wins over "canis"
        [5, 4.5, 4.5],         # "CANIS" unknown exactly -> lowercase "canis" (9,9,9), with dog
        [0, 0, 0],             # unknown word -> zero row
        [0, 0, 0],             # empty text -> zero row
    ])
    torch.testing.assert_close(out, expected)


def test_glove_tokenises_punctuation_and_hyphens(glove: Path) -> None:
    out = GloveEncoder(glove).encode(["dog-retriever", "(dog), retriever!"])
    torch.testing.assert_close(out, torch.tensor([[2.0, 1.5, 0.0]] * 2))


def test_glove_gzip_and_header(tmp_path: Path, glove: Path) -> None:
    gz = tmp_path / "tiny.txt.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(GLOVE)
    headed = tmp_path / "w2v.txt"
    headed.write_text("6 3\n" + GLOVE)
    ref = GloveEncoder(glove).encode(["golden dog", "canis"])
    for path in (gz, headed):
        enc = GloveEncoder(path)
        assert enc.dim == 3
        torch.testing.assert_close(enc.encode(["golden dog", "canis"]), ref)


def test_glove_malformed_lines_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("dog 1 0 0\ncat 1 2\nfish 1 x 3\nnew york 4 4 4\nbird 1 2 3 4\nowl 0 0 1\n")
    enc = GloveEncoder(path)
    with caplog.at_level(logging.WARNING, logger="kgzsl.text.features"):
        vocab = enc.lookup({"dog", "cat", "fish", "new", "bird", "owl"})
    assert set(vocab) == {"dog", "owl"}  # "new york" is a word with a space, not "new"
    assert "skipped 3 malformed" in caplog.text
    # a multi-word entry is stored under its full name
    assert torch.equal(enc.lookup({"new york"})["new york"], torch.tensor([4.0, 4.0, 4.0]))


def test_glove_no_valid_line(tmp_path: Path) -> None:
    path = tmp_path / "garbage.txt"
    path.write_text("hello world\nfoo\n")
    with pytest.raises(ValueError, match="no valid vector line"):
        GloveEncoder(path).encode(["hello"])


def test_glove_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "glove.txt"
    with pytest.raises(FileNotFoundError, match="nope"):
        get_encoder(f"glove:{missing}")


def test_glove_keeps_only_needed_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.txt"
    lines = [f"w{i} {i} 1" for i in range(5000)] + ["dog 2 2", "DOG 7 7"]
    path.write_text("\n".join(lines) + "\n")
    enc = GloveEncoder(path)
    kept: list[dict] = []
    real = GloveEncoder.lookup

    def spy(self: GloveEncoder, words):  # noqa: ANN001
        vocab = real(self, words)
        kept.append(vocab)
        return vocab

    monkeypatch.setattr(GloveEncoder, "lookup", spy)
    out = enc.encode(["dog", "w17 w3"])
    assert len(kept) == 1 and set(kept[0]) == {"dog", "w17", "w3"}
    torch.testing.assert_close(out, torch.tensor([[2.0, 2.0], [10.0, 1.0]]))


def test_glove_name_changes_with_file(glove: Path) -> None:
    first = GloveEncoder(glove).name
    assert first.startswith("glove-tiny-") and first == GloveEncoder(glove).name
    glove.write_text(GLOVE + "cat 1 1 0\n")
    assert GloveEncoder(glove).name != first


def test_unknown_spec_lists_valid() -> None:
    with pytest.raises(ValueError, match="minilm.*wordllama.*glove"):
        get_encoder("word2vec")
    with pytest.raises(ValueError):
        get_encoder("glove:")


def test_node_texts() -> None:
    lemmas = [["dog", "domestic_dog", "Canis_familiaris", "Dog"], ["golden_retriever"]]
    glosses = ["a member of the genus Canis", ""]
    assert node_texts(lemmas, glosses) == ["dog, domestic dog, Canis familiaris", "golden retriever"]
    assert node_texts(lemmas, glosses, use_gloss=True) == [
        "dog, domestic dog, Canis familiaris: a member of the genus Canis", "golden retriever"]
    with pytest.raises(ValueError):
        node_texts(lemmas, glosses[:1])


def test_node_features_normalised_and_cached(tmp_path: Path, glove: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    graph = make_graph(tmp_path)
    feats = node_features(graph, f"glove:{glove}")
    assert feats.shape == (3, 3) and feats.dtype == torch.float32
    assert not torch.isnan(feats).any()
    torch.testing.assert_close(feats[:2].norm(dim=1), torch.ones(2))
    assert torch.equal(feats[2], torch.zeros(3))  # "xyzzy" unknown stays zero
    files = list((tmp_path / "features").glob("*.safetensors"))
    assert len(files) == 1 and "gloss0" in files[0].name

    def boom(self, texts):  # noqa: ANN001
        raise AssertionError("encoder called although the cache is valid")

    monkeypatch.setattr(GloveEncoder, "encode", boom)
    assert torch.equal(node_features(graph, f"glove:{glove}"), feats)

    # a different node list invalidates the cache; so does another gloss flag (another file)
    graph.lemmas[2] = ["dog"]
    with pytest.raises(AssertionError, match="encoder called"):
        node_features(graph, f"glove:{glove}")
    with pytest.raises(AssertionError, match="encoder called"):
        node_features(make_graph(tmp_path), f"glove:{glove}", use_gloss=True)
    monkeypatch.undo()
    again = node_features(graph, f"glove:{glove}")
    torch.testing.assert_close(again[2], torch.tensor([1.0, 0.0, 0.0]))


def test_node_features_no_cache(tmp_path: Path, glove: Path) -> None:
    node_features(make_graph(None), f"glove:{glove}")
    node_features(make_graph(tmp_path), f"glove:{glove}", cache=False)
    assert not (tmp_path / "features").exists()


def _cos(x: torch.Tensor, i: int, j: int) -> float:
    return float(torch.nn.functional.cosine_similarity(x[i], x[j], dim=0))


def test_wordllama_semantics() -> None:
    enc = get_encoder("wordllama")
    x = enc.encode(["golden retriever", "labrador retriever", "espresso"])
    assert x.shape == (3, enc.dim) and enc.dim == 256 and x.dtype == torch.float32
    assert _cos(x, 0, 1) > _cos(x, 0, 2)


@pytest.mark.slow
def test_minilm_semantics() -> None:
    enc = get_encoder("minilm")
    x = enc.encode(["golden retriever", "labrador retriever", "espresso"])
    assert x.shape == (3, 384) and enc.dim == 384 and x.dtype == torch.float32
    assert _cos(x, 0, 1) > _cos(x, 0, 2)
    assert text_encoders._load_minilm.cache_info().currsize >= 1


def test_graph_read_back_hits_the_feature_cache_of_the_graph_built_in_memory(
        tmp_path: Path, glove: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # WordNet has glosses with double spaces ("television ...; ;  - Ernie Kovacs"); nodes.tsv keeps one
    from kgzsl.graph import KnowledgeGraph

    built = KnowledgeGraph(wnids=["n02084071", "n02099601"], names=["dog.n.01", "golden_retriever.n.01"],
                           lemmas=[["dog"], ["golden_retriever"]],
                           glosses=["a member  of the\tgenus Canis;  - a quote", "an English\n breed"],
                           edges=[(1, 0, 0)])
    assert built.glosses == ["a member of the genus Canis; - a quote", "an English breed"]
    built.save(tmp_path / "g")
    feats = node_features(built, f"glove:{glove}", use_gloss=True)

    def boom(self, texts):  # noqa: ANN001
        raise AssertionError("encoder called although the graph is the same")

    monkeypatch.setattr(GloveEncoder, "encode", boom)
    back = KnowledgeGraph.load(tmp_path / "g")
    assert back.glosses == built.glosses
    assert torch.equal(node_features(back, f"glove:{glove}", use_gloss=True), feats)
