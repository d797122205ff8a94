"""Hypothesis fuzzing of the three parsers of user input: labels, configs and graph folders.

Each must either succeed or raise its own documented error (LabelError, ConfigError /
FileNotFoundError, GraphFormatError), never anything else, whatever it is given.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgzsl.training.config import ConfigError, RunConfig, load_config
from kgzsl.graph import GraphFormatError, KnowledgeGraph
from kgzsl.inference.labels import LabelError, LabelResolver, ResolvedLabel

from conftest import requires_wordnet, toy_graph

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ---------------------------------------------------------------- labels

_LABELISH = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A[nvasrx]\d{1,9}\Z"),
    st.from_regex(r"\A[a-z_ .'-]{0,12}\.[nvasr]\.\d{1,3}\Z"),
    st.sampled_from(["dog", "cat", "Dog ", "CATS", "dog.n.01", "x3", "golden retriever", "n02084071", "", " ", ",",
                     "entity.n.01", "animal.n.02", "car-", "_", "\x00", "d\u0301og", "ﬀ", "İ", "\u2028"]),
)


def _check_label(resolver: LabelResolver, label: str) -> None:
    try:
        got = resolver.resolve(label)
    except LabelError as exc:
        assert str(exc)
        return
    assert isinstance(got, ResolvedLabel) and 0 <= got.index < len(resolver.wnids)
    assert got.wnid == resolver.wnids[got.index]


def _check_label_list(resolver: LabelResolver, labels: list[str] | str) -> None:
    try:
        got = resolver.resolve_all(labels)
    except LabelError:
        return
    assert len({r.index for r in got}) == len(got)


@pytest.fixture(scope="module")
def toy_resolver() -> LabelResolver:
    g = toy_graph()
    return LabelResolver(g.wnids, g.names, g.lemmas, wordnet=None)


@FUZZ
@given(label=_LABELISH)
def test_fuzz_label_resolver_without_wordnet(toy_resolver, label):
    _check_label(toy_resolver, label)


@FUZZ
@given(labels=st.one_of(st.lists(_LABELISH, max_size=6), st.text(max_size=40)))
def test_fuzz_label_lists(toy_resolver, labels):
    _check_label_list(toy_resolver, labels)


@pytest.fixture(scope="module")
def wordnet_resolver() -> LabelResolver:
    from kgzsl.graph import load_wordnet

    wn = load_wordnet()
    synsets = [wn.synset(n) for n in ("dog.n.01", "cat.n.01", "crane.n.04", "crane.n.05", "bank.n.01", "entity.n.01")]
    return LabelResolver([f"n{s.offset():08d}" for s in synsets], [s.name() for s in synsets],
                         [s.lemma_names() for s in synsets], wordnet=load_wordnet)


@requires_wordnet
@FUZZ
@given(label=_LABELISH)
def test_fuzz_label_resolver_with_wordnet(wordnet_resolver, label):
    _check_label(wordnet_resolver, label)


# ---------------------------------------------------------------- configs

_KEYS = ["name", "graph.path", "graph.wnids", "features.encoder", "features.gloss", "backbone.name",
         "backbone.weights", "model.name", "model.hidden_channels", "model.dropout", "model.num_groups",
         "train.epochs", "train.lr", "train.holdout", "train.seed", "train.checkpoint_every", "train", "model",
         "train.lr.x", "bogus", "train.bogus", ""]
_VALUES = st.one_of(st.sampled_from(["1", "1e-3", "0.5", "-3", "true", "null", "~", "[64, 32]", "[", "{a: 1}", "abc",
                                     "2020-01-01", "!!python/object:os.system", "&a [*a]", ".inf", "'x'", "\"",
                                     "[1, [2]]", "{", "0x1F", "1_000"]),
                    st.text(max_size=20))
_OVERRIDE = st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(_KEYS), _VALUES), st.text(max_size=30))


def _yamlish() -> st.SearchStrategy[str]:
    line = st.one_of(
        st.builds(lambda k, v: f"{k}: {v}", st.sampled_from(["name", "graph", "train", "model", "features",
                                                                "backbone", "epochs", "lr", "bogus", "- x"]), _VALUES),
        st.builds(lambda k, v: f"  {k}: {v}", st.sampled_from(["path", "epochs", "lr", "name", "hidden_channels",
                                                                  "seed", "holdout", "x"]), _VALUES),
        st.text(max_size=30))
    return st.lists(line, max_size=8).map("\n".join)


def _check_config(path: Path | None, overrides: list[str]) -> None:
    try:
        config = load_config(path, overrides)
    except (ConfigError, FileNotFoundError) as exc:
        assert str(exc)
        return
    assert isinstance(config, RunConfig)


@FUZZ
@given(text=st.one_of(_yamlish(), st.text(max_size=200)), overrides=st.lists(_OVERRIDE, max_size=3))
def test_fuzz_config_files_and_overrides(text, overrides):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _check_config(path, overrides)


@FUZZ
@given(data=st.binary(max_size=200))
def test_fuzz_config_bytes(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(data)
        _check_config(path, [])


@FUZZ
@given(overrides=st.lists(_OVERRIDE, max_size=5))
def test_fuzz_overrides_alone(overrides):
    _check_config(None, overrides)


# ---------------------------------------------------------------- graph folders

_FILES = ["nodes.tsv", "edges.tsv", "ancestors.tsv", "manifest.json"]


@pytest.fixture(scope="module")
def saved_toy(tmp_path_factory) -> Path:
    return toy_graph().save(tmp_path_factory.mktemp("fuzzgraph") / "g")


def _field() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([f"x{i}" for i in range(7)] + ["hypernym", "instance_hypernym", "IsA", "1", "0",
                                                                     "-1", "nan", "inf", "1e400", "9" * 25, "", " "]),
                     st.text(max_size=8))


def _tsv_text() -> st.SearchStrategy[str]:
    row = st.lists(_field(), min_size=1, max_size=5).map("\t".join)
    return st.lists(row, max_size=8).map(lambda rows: "\n".join(["header", *rows]) + "\n")


def _json_value() -> st.SearchStrategy:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10))
    return st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                        max_leaves=10)


def _manifest() -> st.SearchStrategy[str]:
    relations = st.one_of(st.just(["hypernym", "instance_hypernym"]), st.lists(st.text(max_size=6), max_size=3),
                          _json_value())
    good = st.builds(lambda r, extra: json.dumps({"format_version": 1, "relations": r, **extra}),
                     relations, st.dictionaries(st.text(max_size=5), _json_value(), max_size=2))
    return st.one_of(good, _json_value().map(json.dumps), st.text(max_size=60))


def _mutation(original: bytes) -> st.SearchStrategy[bytes]:
    """Insert, delete or overwrite a few bytes of the original file."""
    def apply(edits):
        data = bytearray(original)
        for pos, kind, blob in edits:
            at = pos % (len(data) + 1)
            if kind == "insert":
                data[at:at] = blob
            elif kind == "delete":
                del data[at:at + len(blob) + 1]
            else:
                data[at:at + len(blob)] = blob
        return bytes(data)

    edit = st.tuples(st.integers(0, 10_000), st.sampled_from(["insert", "delete", "overwrite"]),
                     st.binary(min_size=1, max_size=6) | st.sampled_from([b"\t", b"\n", b"x0", b"\xff", b"\r", b"|"]))
    return st.lists(edit, min_size=1, max_size=4).map(apply)


@st.composite
def _damage(draw, folder: Path) -> tuple[str, bytes]:
    name = draw(st.sampled_from(_FILES))
    original = (folder / name).read_bytes()
    if name == "manifest.json":
        content = st.one_of(_manifest().map(str.encode), _mutation(original), st.binary(max_size=80))
    else:
        content = st.one_of(_tsv_text().map(lambda t: t.encode("utf-8", "surrogatepass")), _mutation(original),
                            st.binary(max_size=80))
    return name, draw(content)


@FUZZ
@given(data=st.data())
def test_fuzz_graph_loader(saved_toy, data):
    damages = data.draw(st.lists(_damage(saved_toy), min_size=1, max_size=2))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "g"
        shutil.copytree(saved_toy, folder)
        for name, content in damages:
            (folder / name).write_bytes(content)
        try:
            graph = KnowledgeGraph.load(folder)
        except GraphFormatError as exc:
            assert str(exc)
            return
    assert graph.num_nodes == len(graph.wnids) and graph.edge_index.shape[0] == 2
