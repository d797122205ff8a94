"""WordNet 3.0 access through nltk's reader, offline.

kgzsl reads the Debian ``wordnet-base`` files (``/usr/share/wordnet``) with nltk's
``WordNetCorpusReader``. Those files lack the ``lexnames`` table that nltk needs, so kgzsl ships it
(``kgzsl/data/lexnames``, the 45-line table of lexnames(5WN)) and hands it to the reader. When the
Debian files are absent, an nltk_data ``wordnet`` corpus is used instead. ImageNet class ids
(wnids) are WordNet 3.0 noun offsets: ``n02084071`` is ``dog.n.01``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Mapping

from kgzsl.errors import InputError, SetupError

__all__ = ["WordNetNotFoundError", "load_wordnet", "gloss", "synset_from_wnid", "wnid_of", "hypernym_closure",
           "DEBIAN_WORDNET_DIR", "WNID_RE", "SYNSET_RE"]

logger = logging.getLogger(__name__)

#: an ImageNet class id: ``n`` and a WordNet 3.0 noun offset of 8 digits (``n02084071`` is ``dog.n.01``)
WNID_RE = re.compile(r"^n\d{8}$")
#: a WordNet noun synset name (``dog.n.01``)
SYNSET_RE = re.compile(r"^.+\.n\.\d+$")

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
_LEXNAMES = Path(__file__).resolve().parent.parent / "data" / "lexnames"
_FIX = ("Install WordNet 3.0 in one of two ways: `apt-get install wordnet-base` (Debian/Ubuntu, files in "
        "/usr/share/wordnet; or set KGZSL_WORDNET_DIR to a folder holding data.noun and index.noun), or, "
        "online, `python -c \"import nltk; nltk.download('wordnet')\"`.")


class WordNetNotFoundError(SetupError):
    """Raised when no WordNet 3.0 files can be found; the message names both fixes."""


@functools.lru_cache(maxsize=1)
def _reader_class() -> type:
    """nltk's reader over a plain WordNet dict folder, with kgzsl's ``lexnames`` table, safe to share
    between threads.

    nltk reads synsets and sense counts lazily through file handles the reader shares: two threads
    seeking one at once read each other's lines (``ValueError: read length must be non-negative``,
    or a wrong count). The one reader of a process (:func:`load_wordnet`) is used by every thread
    that serves ``predict``, so those reads hold a lock. The rest of the reader (the lemma index,
    the morphology) is read into memory when it is built.

    Built on first use so that importing kgzsl does not import nltk.
    """
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class OfflineWordNetReader(WordNetCorpusReader):
        _file_lock = threading.RLock()  # lemma_from_key reads a synset while it holds the lock

        def map_wn(self, version: str = "oewn") -> None:  # no OMW mapping offline
            return None

        def synset_from_pos_and_offset(self, pos: str, offset: int) -> Any:
            with self._file_lock:
                return super().synset_from_pos_and_offset(pos, offset)

        def lemma_count(self, lemma: Any) -> int:
            with self._file_lock:
                return super().lemma_count(lemma)

        def lemma_from_key(self, key: str) -> Any:
            with self._file_lock:
                return super().lemma_from_key(key)

        def open(self, fileid: str) -> Any:
            if fileid == "lexnames" and not (Path(str(self.root)) / "lexnames").exists():
                return open(_LEXNAMES, encoding="utf-8")
            return super().open(fileid)

    return OfflineWordNetReader


def gloss(synset_name: str) -> str:
    """WordNet's definition of a synset name (``"crane.n.04"``), or "" for a class of one's own, a name
    WordNet does not know, or where WordNet cannot be loaded."""
    if not SYNSET_RE.match(synset_name):
        return ""
    try:
        return load_wordnet().synset(synset_name).definition()
    except Exception:  # no WordNet here (WordNetNotFoundError), or nltk's WordNetError / ValueError for the name
        return ""


def _candidate_dirs(path: str | os.PathLike | None) -> list[Path]:
    dirs = []
    if path:
        dirs.append(Path(path))
    if os.environ.get("KGZSL_WORDNET_DIR"):
        dirs.append(Path(os.environ["KGZSL_WORDNET_DIR"]))
    dirs.append(DEBIAN_WORDNET_DIR)
    return dirs


def load_wordnet(path: str | os.PathLike | None = None) -> Any:
    """Load WordNet 3.0 once per process.

    Looks in ``path``, then ``$KGZSL_WORDNET_DIR``, then ``/usr/share/wordnet`` (Debian's
    ``wordnet-base``), then nltk_data's ``corpora/wordnet``.

    Args:
        path: Optional folder with the WordNet dict files (``data.noun``, ``index.noun``, ...).

    Returns:
        An nltk ``WordNetCorpusReader`` (a subclass that reads Debian's files offline).

    Raises:
        WordNetNotFoundError: If no WordNet files are found anywhere; the message names the fixes.
    """
    return _load_wordnet(str(path) if path else None)


@functools.lru_cache(maxsize=4)
def _load_wordnet(path: str | None) -> Any:
    import nltk

    start = time.perf_counter()
    for folder in _candidate_dirs(path):
        if (folder / "data.noun").is_file() and (folder / "index.noun").is_file():
            root = str(folder.resolve())
            if root not in nltk.data.path:  # nltk only opens folders on its search path
                nltk.data.path.append(root)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader = _reader_class()(root, None)
            logger.info("loaded WordNet %s from %s in %.1fs", reader.get_version(), root,
                        time.perf_counter() - start)
            return reader
    if path:
        raise WordNetNotFoundError(f"no WordNet files (data.noun, index.noun) in {path}. {_FIX}")
    named = os.environ.get("KGZSL_WORDNET_DIR")
    named_fix = (f" KGZSL_WORDNET_DIR is set to {named}, which holds no data.noun and index.noun: point it at "
                 "the folder that does, or unset it.") if named else ""
    try:
        corpus_root = nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            corpus_root = nltk.data.find("corpora/wordnet.zip/wordnet/")
        except LookupError:
            raise WordNetNotFoundError(f"WordNet 3.0 was not found.{named_fix} {_FIX}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = _reader_class()(corpus_root, None)
    logger.info("loaded WordNet %s from nltk_data in %.1fs", reader.get_version(), time.perf_counter() - start)
    return reader


def wnid_of(synset: Any) -> str:
    """Return the ImageNet-style id of a synset, e.g. ``n02084071`` for ``dog.n.01``."""
    return f"{synset.pos()}{synset.offset():08d}"


def synset_from_wnid(wn: Any, wnid: str) -> Any:
    """Look up the noun synset of a wnid.

    Args:
        wn: A loaded WordNet reader.
        wnid: ``n`` followed by an 8-digit WordNet 3.0 noun offset.

    Raises:
        ValueError: If ``wnid`` is malformed or names no noun synset.
    """
    text = str(wnid).strip()
    if not WNID_RE.match(text):
        raise InputError(f"{wnid!r} is not a wnid: expected 'n' and 8 digits (a WordNet 3.0 noun offset, "
                         "e.g. n02084071 for dog.n.01)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            synset = wn.synset_from_pos_and_offset("n", int(text[1:]))
    except Exception:  # nltk raises WordNetError or returns None depending on the offset
        synset = None
    if synset is None or wnid_of(synset) != text:
        raise InputError(f"{text} is not a WordNet 3.0 noun synset (check the id, or the WordNet version "
                         "of your list: ImageNet wnids are WordNet 3.0 offsets)")
    return synset


def hypernym_closure(synsets: Iterable[Any], index: Mapping[str, int],
                     ) -> tuple[list[Any], list[tuple[int, int, str]]]:
    """Every hypernym and instance hypernym above ``synsets`` that ``index`` lacks, breadth-first.

    Args:
        synsets: Start synsets; each must already be in ``index``.
        index: wnid → node index of the nodes there already (not modified).

    Returns:
        ``(new, edges)``: the synsets to add, in the order that gives them the node indices
        ``len(index)``, ``len(index) + 1``, ...; and every ``(child, parent, relation)`` edge from
        the start synsets and the new ones up, ``relation`` being ``"hypernym"`` or
        ``"instance_hypernym"``. Parents are visited in wnid order (nltk keeps them in sets), so the
        result does not depend on the process.
    """
    known = dict(index)
    new: list[Any] = []
    edges: list[tuple[int, int, str]] = []
    queue = deque(synsets)
    while queue:
        syn = queue.popleft()
        child = known[wnid_of(syn)]
        for rel, parents in (("hypernym", syn.hypernyms()), ("instance_hypernym", syn.instance_hypernyms())):
            for par in sorted(parents, key=wnid_of):
                key = wnid_of(par)
                if key not in known:
                    known[key] = len(known)
                    new.append(par)
                    queue.append(par)
                edges.append((child, known[key], rel))
    return new, edges
