"""Class graphs: WordNet loading, graph building, the :class:`KnowledgeGraph` container."""

from kgzsl.graph.build import (DEFAULT_GRAPH, DEFAULT_WNIDS, build_wordnet_graph, graph_data_dir,
                               load_or_build_graph, named_wnid_sets, resolve_wnids)
from kgzsl.graph.knowledge_graph import GraphFormatError, KnowledgeGraph
from kgzsl.graph.wordnet import WordNetNotFoundError, load_wordnet, synset_from_wnid, wnid_of

__all__ = ["KnowledgeGraph", "GraphFormatError", "WordNetNotFoundError", "build_wordnet_graph",
           "load_or_build_graph", "load_wordnet", "named_wnid_sets", "resolve_wnids", "synset_from_wnid",
           "wnid_of", "graph_data_dir", "DEFAULT_GRAPH", "DEFAULT_WNIDS"]
