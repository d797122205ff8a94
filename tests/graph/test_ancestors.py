"""The one ancestor search: hop distances, DGP's ancestor pairs, common ancestors, LCA paths."""

from __future__ import annotations

from kgzsl.graph.ancestors import ancestor_distances, ancestor_pairs, common_ancestors, lca_path

from conftest import toy_graph


def test_graph_path_goes_through_the_lowest_common_ancestor():
    g = toy_graph()  # entity(0) ← animal(1) ← {dog(3), cat(4)};  entity(0) ← artifact(2) ← car(5)
    assert lca_path(g.parents, 3, 4) == ([3, 1, 4], 1)
    assert lca_path(g.parents, 3, 5) == ([3, 1, 0, 2, 5], 0)
    assert lca_path(g.parents, 3, 1) == ([3, 1], 1)
    assert lca_path([[], []], 0, 1) == ([], None)
    assert g.lca_path(5, 4) == ([5, 2, 0, 1, 4], 0) and g.lca_path(4, 4) == ([4], 4)


def _diamond() -> list[list[int]]:
    r"""0 ← {1, 2};  1 ← 3;  2 ← 3;  3 ← 4;  0 ← 5 ← 6 ← 7;  7 ← 4 (a long way round)."""
    return [[], [0], [0], [1, 2], [3, 7], [0], [5], [6]]


def test_distances_are_shortest_and_in_breadth_first_order():
    parents = _diamond()
    assert list(ancestor_distances(parents, 4).items()) == [(4, 0), (3, 1), (7, 1), (1, 2), (2, 2), (6, 2),
                                                            (0, 3), (5, 3)]
    assert ancestor_pairs(parents, [3, 0]) == [(3, 1, 1), (3, 2, 1), (3, 0, 2)]


def test_common_ancestors_and_the_path_through_the_first_reached_parent():
    parents = _diamond()
    assert common_ancestors(parents, 3, 6) == {0: (2, 2)}
    assert common_ancestors(parents, 4, 6) == {6: (2, 0), 0: (3, 2), 5: (3, 1)}
    # two shortest ways from 4 up to 0 (through 1 or 2): the one breadth-first search met first
    assert lca_path(parents, 4, 2) == ([4, 3, 2], 2)
    assert lca_path(parents, 4, 1) == ([4, 3, 1], 1)
    assert lca_path(parents, 4, 5) == ([4, 7, 6, 5], 5)  # the lowest: fewest hops from both ends


def test_knowledge_graph_methods_use_its_hierarchical_parents(toy):
    assert toy.ancestors(3) == {3: 0, 1: 1, 0: 2}
    assert toy.common_ancestors(3, 5) == {0: (2, 2)}
    assert toy.ancestor_index()[0].T.tolist() == [[a, b] for a, b, _ in ancestor_pairs(toy.parents, range(6))]
