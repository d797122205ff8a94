"""Added concepts stored in the run folder, so that loading a run never re-propagates them.

``kgzsl add-concept`` writes two files into the run folder::

    concepts.yaml          the concepts added, as a taxonomy file (what you would write by hand)
    concepts.safetensors   their rows [K, D + 1] and node features [K, F]; in the header the added
                           nodes and edges, and the sha256 of model.safetensors,
                           node_features.safetensors and concepts.yaml they were computed from

:func:`restore_concepts` (called by ``ZeroShotClassifier.load``) appends the stored rows as they
are, after checking that the three digests still match. When one does not (the run was retrained
in place, or concepts.yaml was edited by hand), the concepts of ``concepts.yaml`` are
re-propagated, with a warning, and stored again (where the run folder can be written), so the
next load reads them as stored. Runs from before this file existed (only ``concepts.yaml``), and an
``add-concept`` interrupted between its two writes, are handled the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError
from kgzsl.inference.concept_state import ConceptState, StoredConcepts, concept_graph, run_text_spec
from kgzsl.inference.concepts import add_concepts, save_concepts
from kgzsl.inference.run_folder import require_run_file
from kgzsl.utils.io import cannot_write, load_tensors, read_tensor_metadata, save_tensors

__all__ = ["store_concepts", "restore_concepts", "stored_elsewhere", "STORE_FORMAT"]

logger = logging.getLogger(__name__)

STORE_FORMAT = "1"
_LIST_FILE, _ROWS_FILE, _LOCK_FILE = "concepts.yaml", "concepts.safetensors", ".concepts.lock"
_SOURCES = {"model": "model.safetensors", "node_features": "node_features.safetensors", "list": _LIST_FILE}


def _digest(path: Path) -> str:
    """sha256 of a file's bytes, or ``"missing"``."""
    if not path.is_file():
        return "missing"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def store_concepts(clf: Any) -> Path:
    """Write the classifier's added concepts into its run folder (``concepts.yaml`` + ``concepts.safetensors``).

    Several processes may add concepts to one run (a server, and ``kgzsl predict`` with a new word):
    the writes take turns under a lock file, and concepts that ``concepts.yaml`` lists but this
    classifier lacks (another process stored them since it loaded the run) are added to it first, so
    that every writer keeps what the others stored.

    Returns:
        The path of ``concepts.safetensors``.

    Raises:
        kgzsl.inference.concepts.ConceptError: If the classifier was not loaded from a run folder.
        kgzsl.errors.OutputError: If the run folder cannot be written to (read-only, no permission).
    """
    from filelock import FileLock

    run = Path(clf.run_dir) if clf.run_dir is not None else None
    if run is None:
        return _store(clf)  # concept_graph raises the error that says why
    lock = FileLock(str(run / _LOCK_FILE))
    try:
        lock.acquire()
    except OSError as exc:  # the lock file is the first thing written: a read-only run folder fails here
        raise cannot_write(run / _LOCK_FILE, exc) from exc
    try:
        theirs = stored_elsewhere(clf)
        if theirs:
            logger.info("%d concept(s) stored in %s by another process since it was loaded: added here too",
                        len(theirs), run)
            try:
                add_concepts(clf, theirs, stored=True)
            except InputError as exc:  # never expected from a list a run stored; this process's concepts still go in
                logger.warning("the concepts another process stored in %s could not be added here (%s); "
                               "they are left out of the stored list", run, exc)
        return _store(clf)
    finally:
        lock.release()


def stored_elsewhere(clf: Any) -> list[Any]:
    """The entries of the run's ``concepts.yaml`` that the classifier lacks: concepts another process
    (``kgzsl add-concept``, a server) stored since the classifier loaded the run."""
    mine = clf.concepts.added if clf.concepts is not None else []
    return [entry for entry in _listed(Path(clf.run_dir) / _LIST_FILE) if entry not in mine]


def _listed(path: Path) -> list[Any]:
    """The entries of a stored ``concepts.yaml`` (none when it is missing or unreadable: it is rewritten)."""
    import yaml

    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        logger.warning("%s cannot be read (%s); it is rewritten with this process's concepts", path, exc)
        return []
    return entries if isinstance(entries, list) else []


def _store(clf: Any) -> Path:
    state = concept_graph(clf)
    run = Path(clf.run_dir)
    graph = state.graph
    base = len(clf.wnids) - len(clf.added_wnids)
    save_concepts(clf, run / _LIST_FILE)
    edges = [(graph.wnids[c], graph.wnids[p], graph.relations[r]) for c, p, r in graph.edges if c >= base]
    meta = {
        "format": STORE_FORMAT, "base_nodes": str(base),
        "nodes": json.dumps([[graph.wnids[i], graph.names[i], graph.lemmas[i], graph.glosses[i]]
                             for i in range(base, graph.num_nodes)]),
        "edges": json.dumps(edges), "entries": json.dumps(state.added),
        **{f"sha256/{key}": _digest(run / name) for key, name in _SOURCES.items()},
    }
    path = run / _ROWS_FILE
    save_tensors(path, {"rows": clf.rows[base:].detach().cpu().contiguous(),
                        "features": state.x[base:].contiguous()}, metadata=meta)
    return path


def _read(path: Path, base: int, width: int) -> tuple[StoredConcepts, torch.Tensor, list[dict[str, Any]], dict]:
    """The stored nodes, rows, entries and metadata, after checking they fit the run."""
    meta = read_tensor_metadata(path)
    tensors = load_tensors(path)
    fix = "delete it and add the concepts again with `kgzsl add-concept RUN --file RUN/concepts.yaml`"
    if meta.get("format") != STORE_FORMAT:
        raise InputError(f"{path} has concept store format {meta.get('format')!r}, this kgzsl reads "
                         f"{STORE_FORMAT}; {fix}")
    try:
        nodes = json.loads(meta["nodes"])
        edges = [tuple(e) for e in json.loads(meta["edges"])]
        entries = json.loads(meta["entries"])
        rows, features = tensors["rows"], tensors["features"]
        stored_base = int(meta["base_nodes"])
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{path} is damaged ({exc}); {fix}") from None
    if stored_base != base or rows.shape != (len(nodes), width) or features.size(0) != len(nodes):
        raise InputError(f"{path} does not fit this run ({stored_base} run nodes and {tuple(rows.shape)} rows "
                         f"stored, the run has {base} nodes and {width}-wide rows); {fix}")
    stored = StoredConcepts(wnids=[n[0] for n in nodes], names=[n[1] for n in nodes], lemmas=[n[2] for n in nodes],
                            glosses=[n[3] for n in nodes], edges=edges, features=features.float())
    return stored, rows, entries, meta


def _check_readable(run: Path, name: str) -> None:
    """Raise the error that says what is wrong with the run's tensor file ``name``, if anything is.

    Raises:
        kgzsl.inference.run_folder.RunNotFoundError: If the file is missing.
        kgzsl.utils.io.TensorFileError: If it is not a readable safetensors file (truncated, corrupt).
    """
    load_tensors(require_run_file(run, name))


def restore_concepts(clf: Any) -> int:
    """Append the concepts stored in the classifier's run folder (see the module text).

    Returns:
        How many concepts were restored.

    Raises:
        kgzsl.errors.InputError: If ``concepts.safetensors`` is damaged or belongs to another run.
        kgzsl.graph.taxonomy.TaxonomyError: If ``concepts.yaml`` must be re-read and has problems.
    """
    run = Path(clf.run_dir)
    path = run / _ROWS_FILE
    if path.is_file():
        # the digests first: rows stored for another training (retrained in place, on another graph) are
        # propagated again, whatever their shape
        meta = read_tensor_metadata(path)
        changed = [name for key, name in _SOURCES.items() if meta.get(f"sha256/{key}") != _digest(run / name)]
        if not changed:
            stored, rows, entries, meta = _read(path, len(clf.wnids), clf.rows.size(1))
            clf.extend(rows, stored.wnids, stored.names, stored.lemmas)
            clf.attach_concepts(ConceptState(graph=None, x=None, model=None, text_spec=run_text_spec(clf.summary),
                                             added=list(entries), pending=stored))
            return len(entries)
        for key in ("model", "node_features"):  # a damaged file is the problem to report, not a re-propagation
            if _SOURCES[key] in changed:
                _check_readable(run, _SOURCES[key])
        logger.warning("%s was computed for another %s: re-propagating the concepts of %s",
                       path, " and ".join(changed), run / _LIST_FILE)
    if not (run / _LIST_FILE).is_file():
        return 0
    if not path.is_file():
        logger.warning("%s lists concepts but %s is missing (an interrupted `kgzsl add-concept`, or a run from "
                       "an older kgzsl): re-propagating them", run / _LIST_FILE, path.name)
    report = add_concepts(clf, run / _LIST_FILE, stored=True)
    try:  # stored again, so that the next load reads the rows instead of propagating them once more
        store_concepts(clf)
        logger.info("stored the re-propagated concepts in %s", path)
    except OSError as exc:  # a read-only run folder (OutputError): they live in this process only
        logger.warning("could not store the re-propagated concepts in %s (%s); every load of the run "
                       "propagates them again", run, exc)
    return len(report.added)
