"""Class graphs: WordNet loading, graph building, the :class:`KnowledgeGraph` container."""

from kgzsl.graph.build import (DEFAULT_GRAPH, DEFAULT_WNIDS, GraphNotFoundError, build_command, build_wordnet_graph,
                               graph_data_dir, load_graph, load_or_build_graph, named_wnid_sets, resolve_graph_dir,
                               resolve_wnids)
from kgzsl.graph.graph_folder import GraphFormatError
from kgzsl.graph.knowledge_graph import KnowledgeGraph
from kgzsl.graph.wordnet import WordNetNotFoundError, load_wordnet, synset_from_wnid, wnid_of

__all__ = ["KnowledgeGraph", "GraphFormatError", "GraphNotFoundError", "WordNetNotFoundError", "build_wordnet_graph",
           "build_command", "load_graph", "load_or_build_graph", "load_wordnet", "named_wnid_sets", "resolve_wnids",
           "resolve_graph_dir", "synset_from_wnid", "wnid_of", "graph_data_dir", "DEFAULT_GRAPH", "DEFAULT_WNIDS"]
