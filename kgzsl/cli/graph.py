"""``kgzsl build-graph``: a class graph from wnid lists (WordNet, ConceptNet or both), or around a taxonomy file."""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from kgzsl.errors import InputError

__all__ = ["add_graph_parser"]


def _cmd_build_graph(args: argparse.Namespace) -> int:
    from kgzsl.graph import build_wordnet_graph, resolve_graph_dir, resolve_wnids

    start = time.perf_counter()
    target = resolve_graph_dir(args.out or "custom")  # the same rule as graph.path in a run config
    if args.conceptnet and args.source == "wordnet":  # the file was read by nothing: a WordNet graph came out
        raise InputError(f"--conceptnet {args.conceptnet} is read by the ConceptNet sources only: add --source "
                         "wordnet+conceptnet (WordNet and ConceptNet merged) or --source conceptnet")
    if args.taxonomy:
        return _build_taxonomy_graph(args, target, start)
    if not args.wnids:
        raise InputError("give --wnids (shipped sets or wnid files) and/or --taxonomy (a taxonomy file)")
    wnids, sources = resolve_wnids(args.wnids)
    if args.source != "wordnet":
        from kgzsl.graph.conceptnet import build_source_graph

        parts = args.conceptnet_topk.split(",")
        if len(parts) != 2 or not all(k.strip().isdigit() and int(k) > 0 for k in parts):
            raise InputError(f"--conceptnet-topk must be two positive integers K1,K2, got {args.conceptnet_topk!r}")
        topk = (int(parts[0]), int(parts[1]))
        graph = build_source_graph(args.source, wnids, args.conceptnet, sources=sources, topk=topk,
                                   wordnet_dir=args.wordnet, progress=not args.quiet)
        out = graph.save(target)
        cn = graph.manifest if args.source == "conceptnet" else graph.manifest["conceptnet"]
        read, c = cn["conceptnet"], cn["counts"]
        print(f"graph {out} ({args.source}): {graph.num_nodes} nodes, {len(graph.edges)} edges, "
              f"{len(graph.relations)} relations; ConceptNet: {read['lines']} lines read, {read['kept']} English "
              f"assertions, {read['non_english']} non-English, {read['malformed']} malformed lines skipped "
              f"{read['malformed_by_reason']}; {c['classes_matched']} of {c['classes']} classes matched; "
              f"{time.perf_counter() - start:.2f}s")
        return 0
    graph = build_wordnet_graph(wnids, sources, wordnet_dir=args.wordnet)
    out = graph.save(target)
    c = graph.manifest["counts"]
    print(f"graph {out}: {c['nodes']} nodes ({c['requested']} requested + ancestors), {c['edges']} edges "
          f"({c['instance_edges']} instance-hypernym), {c['ancestor_pairs']} ancestor pairs, {c['roots']} root(s); "
          f"built in {graph.manifest['build_seconds']:.2f}s, {time.perf_counter() - start:.2f}s with WordNet "
          "loading and writing")
    return 0


def _build_taxonomy_graph(args: argparse.Namespace, target: Path, start: float) -> int:
    from kgzsl.graph import resolve_wnids
    from kgzsl.graph.build import build_taxonomy_graph
    from kgzsl.graph.taxonomy_files import read_taxonomy

    if args.source != "wordnet":
        raise InputError("--taxonomy builds on WordNet: leave --source at wordnet")
    entries = read_taxonomy(args.taxonomy)
    wnids, sources = resolve_wnids(args.wnids or "imagenet1k")
    record = {"path": str(Path(args.taxonomy).absolute()),
              "sha256": hashlib.sha256(Path(args.taxonomy).read_bytes()).hexdigest()}
    graph = build_taxonomy_graph(entries, wnids, sources, wordnet_dir=args.wordnet, taxonomy_source=record)
    out = graph.save(target)
    c = graph.manifest["counts"]
    print(f"graph {out}: {c['nodes']} nodes ({c['taxonomy_classes']} classes of your own from {args.taxonomy}, "
          f"{c['nodes'] - c['taxonomy_classes']} WordNet nodes from {args.wnids or 'imagenet1k'} and the taxonomy's "
          f"WordNet parents with their ancestors), {c['edges']} edges; {time.perf_counter() - start:.2f}s. Train on it "
          f"with `kgzsl train --config dgp graph.path={args.out or 'custom'}`")
    return 0


def add_graph_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``build-graph`` on the subcommand parsers ``sub``."""
    p = sub.add_parser("build-graph", help="build a class graph (WordNet and/or ConceptNet) from wnid lists or a taxonomy")
    p.add_argument("--wnids", help="NAME_OR_FILE[,NAME_OR_FILE...]: shipped sets (imagenet1k, "
                   "imagenet21k, 2-hops, 3-hops, all) or text files with one wnid per line (with --taxonomy: "
                   "default imagenet1k, the seen classes training needs)")
    p.add_argument("--taxonomy", metavar="FILE", help="a taxonomy file (YAML or CSV; see docs/taxonomy.md): your "
                   "classes as nodes under their WordNet parents (with --wnids' synsets and all ancestors)")
    p.add_argument("--out", metavar="NAME_OR_PATH", help="where the graph goes, read back by graph.path=NAME_OR_PATH: "
                   "a bare name is a folder of the graph data folder ($KGZSL_GRAPH_DATA, else ./graph_data if the "
                   "current directory has one, else $KGZSL_HOME/graph_data, default ~/.local/share/kgzsl/graph_data); "
                   "a path (with a /) is relative to the current directory (default: custom)")
    p.add_argument("--wordnet", help="folder with the WordNet 3.0 dict files (default: /usr/share/wordnet)")
    p.add_argument("--source", choices=["wordnet", "conceptnet", "wordnet+conceptnet"], default="wordnet",
                   help="graph source: WordNet hypernyms, the ConceptNet 2-hop neighbourhood, or both merged")
    p.add_argument("--conceptnet", metavar="PATH",
                   help="conceptnet-assertions-5.7.0.csv.gz (needed by the conceptnet sources)")
    p.add_argument("--conceptnet-topk", default="100,50", metavar="K1,K2",
                   help="ConceptNet neighbours kept per node at hop 1 and hop 2 (default 100,50 as ZSL-KG)")
    p.set_defaults(func=_cmd_build_graph)
