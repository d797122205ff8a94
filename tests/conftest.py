"""Shared fixtures: a hand-built 6-node taxonomy, WordNet availability, a tiny real run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgzsl.graph import KnowledgeGraph

# the tests run tiny models, for which one thread is faster than two fighting over a shared machine
torch.set_num_threads(1)


def wordnet_available() -> bool:
    try:
        from kgzsl.graph import load_wordnet

        load_wordnet()
        return True
    except Exception:
        return False


requires_wordnet = pytest.mark.skipif(not wordnet_available(),
                                      reason="WordNet 3.0 not installed (apt-get install wordnet-base)")


def toy_graph() -> KnowledgeGraph:
    r"""entity(0) ← animal(1) ← {dog(3), cat(4)};  entity(0) ← artifact(2) ← car(5)."""
    names = ["entity", "animal", "artifact", "dog", "cat", "car"]
    return KnowledgeGraph(
        wnids=[f"x{i}" for i in range(6)], names=[f"{n}.n.01" for n in names], lemmas=[[n] for n in names],
        glosses=[f"a {n}" for n in names], edges=[(1, 0, 0), (2, 0, 0), (3, 1, 0), (4, 1, 0), (5, 2, 0)])


@pytest.fixture
def toy() -> KnowledgeGraph:
    return toy_graph()


def random_tree(num_nodes: int, seed: int = 0, extra_parents: int = 0) -> KnowledgeGraph:
    """A random rooted DAG: node i > 0 gets a parent among 0..i-1 (+ a few second parents)."""
    g = torch.Generator().manual_seed(seed)
    edges = [(i, int(torch.randint(0, i, (1,), generator=g)), 0) for i in range(1, num_nodes)]
    for _ in range(extra_parents):
        child = int(torch.randint(2, num_nodes, (1,), generator=g))
        parent = int(torch.randint(0, child, (1,), generator=g))
        if (child, parent, 0) not in edges:
            edges.append((child, parent, 0))
    return KnowledgeGraph(wnids=[f"x{i}" for i in range(num_nodes)], names=[f"n{i}.n.01" for i in range(num_nodes)],
                          lemmas=[[f"n{i}"] for i in range(num_nodes)], glosses=[""] * num_nodes, edges=edges)


# 24 ImageNet-1k classes (cats, dogs, fish, vehicles) + a few 21K classes: a small real graph
TINY_WNIDS = """n02123045 n02123159 n02124075 n02123394 n02123597 n02099601 n02099712 n02106662 n02110958
n02085620 n01440764 n01443537 n01484850 n01491361 n04037443 n02690373 n02701002 n03100240 n03594945 n04285008
n02814533 n03770679 n03777568 n04467665 n02121620 n02084071 n02958343 n02131653""".split()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: tiny WordNet graph, wordllama features, Lite0 targets, a short DGP training."""
    if not wordnet_available():
        pytest.skip("WordNet 3.0 not installed (apt-get install wordnet-base)")
    from kgzsl.training.config import load_config
    from kgzsl.training.run import train_run

    root = tmp_path_factory.mktemp("tiny")
    wnid_file = root / "tiny.txt"
    wnid_file.write_text("\n".join(TINY_WNIDS) + "\n")
    config = load_config(None, [f"graph.path={root / 'graph'}", f"graph.wnids={wnid_file}", "name=tiny",
                                "features.encoder=wordllama", "model.name=dgp", "model.hidden_channels=[256]",
                                "train.epochs=150", "train.val_fraction=0.1", "train.patience=150",
                                "train.device=cpu"])
    return train_run(config, out_dir=root / "run", progress=False, build_graph=True)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """An empty current directory, with the user data folder and the override variable under control."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("KGZSL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KGZSL_GRAPH_DATA", raising=False)
    return cwd
