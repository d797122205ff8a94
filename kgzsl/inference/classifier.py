"""ZeroShotClassifier: a frozen backbone plus predicted classifier rows, for any candidate labels.

Prediction is a fixed linear head: the pooled image feature, with a constant 1 appended, is
dotted with one ``[W | b]`` row per candidate class: the backbone's own row for the classes it
was trained on, a predicted row on the same scale for the others, all centred on the user's images
once the run is calibrated (:mod:`kgzsl.inference.scoring`;
``scoring="predicted"`` scores every candidate with its predicted row, as GCNZ / DGP papers do).
No graph work happens at predict time; the candidate matrix is built once per label list and reused.

Example:
    >>> clf = ZeroShotClassifier.load("runs/dgp")
    >>> clf("cat.jpg", candidate_labels=["cat", "dog", "bear"])   # = clf.predict(...)
    [{'label': 'cat', 'wnid': 'n02121620', 'synset': 'cat.n.01', 'score': 0.93}, ...]
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from kgzsl.errors import InputError
from kgzsl.inference.abstain_rule import (check_calibration, follows_score_calibration, missing_calibration,
                                          read_calibration)
from kgzsl.inference.adaptation import ClassAdapter
from kgzsl.inference.batches import TOP_K_EVERY_CLASS, check_top_k, classify_images, split_pixel_batch
from kgzsl.inference.candidates import CandidateScoring
from kgzsl.inference.head import HeadCache
from kgzsl.inference.labels import LabelError, LabelResolver, NotInGraphError, ResolvedLabel
from kgzsl.inference.run_folder import RunFormatError, RunNotFoundError, read_run, requested_wnids, run_backbone
from kgzsl.inference.scoring import CALIBRATION_FILE, ScoreCalibration, fit_calibration
from kgzsl.vision.images import ImageSource, describe_image, is_tensor_batch, load_image

__all__ = ["ZeroShotClassifier", "RunNotFoundError", "RunFormatError"]

logger = logging.getLogger(__name__)


#: concepts saved with a run (``kgzsl add-concept``): the list as written, and their stored rows
CONCEPTS_FILE = "concepts.yaml"
CONCEPT_ROWS_FILE = "concepts.safetensors"
#: label lists whose candidate heads the classifier keeps (least recently used dropped first)
HEAD_CACHE_SIZE = 8


class ZeroShotClassifier:
    """Scores images against any classes of the run's graph.

    Args:
        backbone: The frozen backbone the rows were trained for.
        rows: ``[N, D + 1]`` predicted unit rows, one per graph node.
        wnids: Node ids in row order.
        names: Synset names in row order.
        lemmas: Lemma names per node.
        row_scale: Mean norm of the backbone's own rows; logits are scaled by it so that softmax
            scores have the sharpness of the original classifier.
        max_pixels: Images whose header claims more pixels are refused before decoding (see
            :func:`kgzsl.vision.images.load_image`); an attribute, so it can be changed after loading.
        run_dir: The run folder the rows come from (:meth:`load` sets it); concepts and abstain
            calibration are stored there.
        summary: The run's ``run.json`` (empty when the classifier was not loaded from a run).
        abstain_calibration: A max-logit threshold ``{"threshold": ...}`` for ``abstain=True`` (see
            :meth:`set_abstain`); :meth:`load` reads the run's ``abstain.json``.
        scoring: ``"calibrated"`` (``"auto"``'s choice when the backbone has rows of its own, as
            every loaded backbone has): the backbone's classes are scored with its own rows,
            the other nodes with predicted rows times ``row_scale``, all centred on the user's
            images once the run is calibrated (:mod:`kgzsl.inference.scoring`); ``"predicted"``:
            every node with its predicted row times ``row_scale`` (the papers' protocol, for
            research comparisons).
        score_calibration: Statistics of the user's unlabelled images for ``"calibrated"``
            (:func:`kgzsl.tasks.calibrate.calibrate_scores`); None: the run's
            ``score_calibration.safetensors`` (:meth:`load`) if it has one, else no centring.

    Attributes:
        concept_lock: Held while the concept state loads (:func:`~kgzsl.inference.concept_state.concept_graph`)
            or concepts are added, so that threads adding labels or explaining at once share one state.

    A label that is a WordNet noun but not a node is added as a concept on first use (stored with
    the run; set :attr:`add_missing_labels` to False to get the error instead), and so is a word's
    usual sense where the graph has only senses the word is never used for (``"sink"``: the
    plumbing fixture, not a sinkhole; :class:`~kgzsl.inference.labels.LabelResolver`).

    Calling the classifier is :meth:`predict`: ``clf(images, candidate_labels=[...], top_k=5)``, like
    Hugging Face's ``zero-shot-image-classification`` pipeline.
    """

    def __init__(self, backbone: Any, rows: torch.Tensor, wnids: Sequence[str], names: Sequence[str],
                 lemmas: Sequence[Sequence[str]], row_scale: float = 1.0, max_pixels: int = 100_000_000, *,
                 run_dir: str | Path | None = None, summary: Mapping[str, Any] | None = None,
                 abstain_calibration: Mapping[str, Any] | None = None, scoring: str = "auto",
                 score_calibration: ScoreCalibration | None = None) -> None:
        if rows.size(0) != len(wnids):
            raise ValueError(f"{rows.size(0)} rows but {len(wnids)} nodes")
        if rows.size(1) != backbone.feature_dim + 1:
            raise ValueError(f"rows have {rows.size(1)} columns but backbone {backbone.name} gives "
                             f"{backbone.feature_dim}-d features (+1 bias); the run was trained for another backbone")
        self.backbone = backbone
        self.rows = rows.to(backbone.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        # how nodes are scored (mode, the user's calibration, score rows, adapter), built on first use
        self._scoring = CandidateScoring(backbone, scoring, row_scale, run_dir=self.run_dir,
                                         calibration=score_calibration)
        self.wnids = list(wnids)
        self.names = list(names)
        self.lemmas = [list(x) for x in lemmas]
        self.max_pixels = int(max_pixels)
        # (rows, resolved labels, LinearHead) of the last few label lists; `search` makes one per query
        # label lists come and go; the head over every class (no labels) stays: it takes seconds to build
        self._heads = HeadCache(HEAD_CACHE_SIZE, keep=lambda key: key[0] is None)
        self.summary: dict[str, Any] = dict(summary or {})
        self._num_given = len(self.wnids)  # nodes given at construction; later ones came through extend()
        self._requested = requested_wnids(self.run_dir) if self.run_dir is not None else None
        self.resolver = self._make_resolver()
        self._concepts: Any = None
        self._abstain: dict[str, Any] | None = None
        self.set_abstain(abstain_calibration)
        self.concept_lock = threading.RLock()  # re-entrant: adding concepts loads the concept state
        self._add_missing_labels = True
        self._store_added_labels = True
        self._abstain_warned = False  # the threshold's other label list is said once
        self._template_warned = False  # an ignored hypothesis_template is said once
        self._concepts_version: int | None = None  # the run's concepts.yaml as last read by refresh_concepts

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", backbone: Any = None,
             finetuned: bool = True, scoring: str = "auto") -> ZeroShotClassifier:
        """Load a trained run folder (see :mod:`kgzsl.training.run`).

        Args:
            run_dir: Folder written by ``kgzsl train``.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``...
            backbone: An already loaded backbone to reuse (must match the run's).
            finetuned: Use the backbone fine-tuned under the run's rows (``kgzsl finetune``, in
                ``<run>/finetune/``) when there is a finished one and ``backbone`` is None; False
                loads the original weights the rows were trained for.
            scoring: ``"auto"``, ``"calibrated"`` or ``"predicted"`` (see the class).

        Raises:
            RunNotFoundError: If the folder is missing or the run did not finish.
            RunFormatError: If its files are corrupt or disagree with each other (row count vs
                nodes.tsv, backbone), or ``backbone`` is not the one the run was trained for.
            kgzsl.utils.io.TensorFileError: If rows.safetensors is not a safetensors file (never unpickled).
        """
        run = read_run(Path(run_dir))
        run_dir = run.path
        backbone = run_backbone(run, device, backbone, finetuned)
        calib = run_dir / CALIBRATION_FILE
        scores = ScoreCalibration.load(calib) if calib.is_file() else None  # a damaged file: its own error
        try:
            abstain = follows_score_calibration(read_calibration(run_dir), scores, run_dir)
            clf = cls(backbone, run.rows, run.wnids, run.names, run.lemmas, run.row_scale, run_dir=run_dir,
                      summary=run.summary, abstain_calibration=abstain, scoring=scoring, score_calibration=scores)
        except ValueError as exc:  # the feature size differs: another backbone or other weights
            raise RunFormatError(f"run {run_dir} does not fit this backbone: {exc}") from None
        if (run_dir / CONCEPTS_FILE).is_file() or (run_dir / CONCEPT_ROWS_FILE).is_file():
            from kgzsl.inference.concept_store import restore_concepts

            restore_concepts(clf)  # concepts added with `kgzsl add-concept` travel with the run (rows stored)
        return clf

    @property
    def added_wnids(self) -> list[str]:
        """Ids of the nodes appended with :meth:`extend` (concepts added after loading), in row order."""
        return self.wnids[self._num_given:]

    def extend(self, rows: torch.Tensor, wnids: Sequence[str], names: Sequence[str],
               lemmas: Sequence[Sequence[str]]) -> None:
        """Append nodes after the existing ones (rows predicted for new concepts); cached heads are dropped.

        Args:
            rows: ``[K, D + 1]`` rows of the new nodes.
            wnids: Their ids (new to the classifier).
            names: Their synset names.
            lemmas: Their lemma names.

        Raises:
            ValueError: If the counts or the row width disagree, or an id is already a node.
        """
        if rows.ndim != 2 or rows.size(1) != self.rows.size(1):
            raise ValueError(f"new rows must be [K, {self.rows.size(1)}], got {tuple(rows.shape)}")
        if not rows.size(0) == len(wnids) == len(names) == len(lemmas):
            raise ValueError(f"{rows.size(0)} rows for {len(wnids)} ids, {len(names)} names and {len(lemmas)} "
                             "lemma lists")
        known = set(self.wnids)
        if len(set(wnids)) != len(wnids) or known.intersection(wnids):
            raise ValueError(f"node ids must be new and unique: {sorted(known.intersection(wnids)) or list(wnids)}")
        with self._heads.changing():  # a head built meanwhile (another thread) waits for all of it
            self.rows = torch.cat([self.rows, rows.to(self.rows.device, self.rows.dtype)])
            self.wnids += list(wnids)
            self.names += list(names)
            self.lemmas += [list(ls) for ls in lemmas]
            self._scoring.replace_from(len(self.wnids) - len(wnids), rows)  # new nodes are never backbone classes
            self.resolver = self._make_resolver()

    def replace_added_rows(self, rows: torch.Tensor) -> None:
        """Replace the rows of the nodes appended with :meth:`extend` (concepts re-propagated); heads are dropped.

        Raises:
            ValueError: If ``rows`` is not ``[len(added_wnids), D + 1]``.
        """
        if tuple(rows.shape) != (len(self.added_wnids), self.rows.size(1)):
            raise ValueError(f"expected [{len(self.added_wnids)}, {self.rows.size(1)}] rows, got {tuple(rows.shape)}")
        # new tensors, not in-place writes: the rows may have been made under torch.inference_mode()
        with self._heads.changing():
            self.rows = torch.cat([self.rows[:self._num_given], rows.to(self.rows.device, self.rows.dtype)])
            self._scoring.replace_from(self._num_given, rows)

    def _clear_heads(self) -> None:
        """Forget every cached candidate head (the nodes changed)."""
        self._heads.clear()

    @property
    def concepts(self) -> Any:
        """The :class:`~kgzsl.inference.concept_state.ConceptState` that added concepts extend (the run's graph,
        node features, model and the concepts added); None until the first concept is added."""
        return self._concepts

    def attach_concepts(self, state: Any) -> None:
        """Keep the concept state :func:`kgzsl.inference.concept_state.concept_graph` loads on first use.

        Raises:
            ValueError: If another state is attached already.
        """
        if self._concepts is not None and state is not self._concepts:
            raise ValueError("this classifier already has a concept state")
        self._concepts = state

    @property
    def abstain_calibration(self) -> dict[str, Any] | None:
        """The max-logit threshold used by ``abstain=True`` (a copy), or None if there is none."""
        return dict(self._abstain) if self._abstain is not None else None

    def set_abstain(self, calibration: Mapping[str, Any] | None) -> None:
        """Use ``calibration`` (``{"threshold": ..., ...}``, as :func:`kgzsl.tasks.abstain.calibrate_abstain`
        returns) for ``abstain=True``; None removes it. Nothing is written to the run folder.

        Raises:
            ValueError: If it holds no finite ``threshold``.
        """
        self._abstain = None if calibration is None else check_calibration(calibration)

    def _make_resolver(self) -> LabelResolver:
        """A label resolver over the current nodes, preferring the backbone's and the requested classes' senses."""
        from kgzsl.graph.wordnet import load_wordnet

        seen = [i for i in self.seen_nodes().tolist() if i >= 0] if hasattr(self.backbone, "wnids") else []
        def grounded() -> set[int]:
            return {a for ups in self.seen_ancestors().values() for a in ups}

        def can_add() -> bool:  # a word's usual sense is added only where concepts can be (the run's model)
            run = self.run_dir
            return self.add_missing_labels and run is not None and (run / "model.safetensors").is_file()

        return LabelResolver(self.wnids, self.names, self.lemmas, wordnet=load_wordnet, seen=seen,
                             requested=self.requested_nodes(), grounded=grounded if seen else None, can_add=can_add)

    def _node_labels(self, nodes: Sequence[int]) -> list[str]:
        """What names each node in a prediction without labels: its first word where that word names
        no other node (``"tabby"`` is the cat, ``tabby.n.02``, and the fabric), else its synset name,
        so that a label given back as a candidate scores the same node (as ``/labels`` suggests them)."""
        from collections import Counter

        words = Counter(lemma.replace("_", " ").lower() for node_lemmas in self.lemmas for lemma in set(node_lemmas))
        labels = []
        for i in nodes:
            word = self.lemmas[i][0].replace("_", " ") if self.lemmas[i] else self.wnids[i]
            labels.append(word if words.get(word.lower(), 0) <= 1 else self.names[i])
        return labels

    def requested_nodes(self) -> list[int] | None:
        """Nodes that name a class someone asked for: the wnid lists the run's graph was built from, and
        the concepts added since; None when the lists are not known (then every node counts)."""
        if self._requested is None:
            return None
        return [i for i, w in enumerate(self.wnids) if w in self._requested or i >= self._num_given]

    @property
    def row_scale(self) -> float:
        """Mean norm of the backbone's own rows, which predicted rows are multiplied by."""
        return self._scoring.row_scale

    @property
    def scoring(self) -> str:
        """``"calibrated"`` or ``"predicted"``: how candidates are scored (see the class)."""
        return self._scoring.mode

    @property
    def score_calibration(self) -> ScoreCalibration | None:
        """The statistics of the user's images ``"calibrated"`` scoring centres on (None: not calibrated)."""
        return self._scoring.calibration

    def calibrate_scores(self, features: torch.Tensor, source: str) -> ScoreCalibration:
        """Fit the score calibration on pooled features of unlabelled images and use it from now on.

        Nothing is written; ``kgzsl calibrate`` (:func:`kgzsl.tasks.calibrate.calibrate_scores`) also
        stores it in the run.
        """
        calib = fit_calibration(features, self.backbone.classifier_rows(), source)
        self.set_score_calibration(calib)
        return calib

    def set_score_calibration(self, calibration: ScoreCalibration | None) -> None:
        """Score through ``calibration`` (as :func:`kgzsl.inference.scoring.fit_calibration` returns it, or
        :meth:`ScoreCalibration.load` reads it) from now on; None goes back to the uncalibrated scores.
        Nothing is written to the run folder."""
        with self._heads.changing():
            self._scoring.use(calibration)

    @property
    def add_missing_labels(self) -> bool:
        """Whether a WordNet noun that is not a node, or a word's usual sense missing from the graph, is
        added as a concept on first use (default True; needs a run folder, where it is stored)."""
        return self._add_missing_labels

    @add_missing_labels.setter
    def add_missing_labels(self, value: bool) -> None:
        self._add_missing_labels = bool(value)
        self._clear_heads()  # label lists resolved under the other setting

    @property
    def store_added_labels(self) -> bool:
        """Whether the concepts :attr:`add_missing_labels` adds are written to the run folder (default
        True, so the next load has them; False keeps them in this process, as a benchmark does)."""
        return self._store_added_labels

    @store_added_labels.setter
    def store_added_labels(self, value: bool) -> None:
        self._store_added_labels = bool(value)

    @property
    def adapt_to_images(self) -> bool:
        """Whether a calibrated run fits a label list's candidates to the user's images
        (:mod:`kgzsl.inference.adaptation`; default True). False keeps the calibrated rows as they are."""
        return self._scoring.adapt

    @adapt_to_images.setter
    def adapt_to_images(self, value: bool) -> None:
        self._scoring.adapt = bool(value)
        self._clear_heads()

    def adapter(self) -> ClassAdapter | None:
        """The :class:`~kgzsl.inference.adaptation.ClassAdapter` of the calibration's stored features
        (None: not calibrated, ``"predicted"`` scoring, or a calibration without stored features)."""
        return self._scoring.adapter()

    def seen_nodes(self) -> torch.Tensor:
        """``[1000]`` node index of each of the backbone's classes, -1 where the class is not a node (empty
        for a backbone without classes of its own)."""
        index = {w: i for i, w in enumerate(self.wnids)}
        return torch.tensor([index.get(w, -1) for w in getattr(self.backbone, "wnids", ())], dtype=torch.long)

    def score_rows(self) -> torch.Tensor:
        """``[N, D + 1]`` rows every node is scored with (see ``scoring``); logits are ``rows @ [x, 1]``."""
        return self._scoring.score_rows(self.rows, self.seen_nodes)

    def seen_ancestors(self) -> dict[int, dict[int, int]]:
        """Each seen node's ancestors (read once from the run's graph, or WordNet)."""
        return self._scoring.seen_ancestors(self.wnids, self.seen_nodes)

    def head(self, candidate_labels: Sequence[str] | str | None = None) -> tuple[torch.Tensor, list[ResolvedLabel]]:
        """The ``[C, D + 1]`` candidate rows (logits are their product with ``[x, 1]``) and the resolved labels.

        ``None`` stands for every class the graph was built for (its requested wnid lists and the
        concepts added since, not the ancestors added to connect them; every node when the lists are
        unknown). The rows are a copy of :meth:`score_rows`' (the head keeps only its own).
        """
        _, resolved, _ = self._head(candidate_labels)
        every = self.score_rows()
        return every[torch.tensor([r.index for r in resolved], device=every.device)], resolved

    def candidate_head(self, candidate_labels: Sequence[str] | str | None = None) -> Any:
        """The head that scores a label list (a :class:`~kgzsl.inference.head.LinearHead` or one of its
        compositions), from the head cache: ``.logits(features)`` and ``.topk(features, k)``."""
        return self._head(candidate_labels)[2]

    def resolve_labels(self, candidate_labels: Sequence[str] | str | None = None) -> list[ResolvedLabel]:
        """The resolved candidates of a label list (None: every class), through the head cache.

        Raises:
            kgzsl.inference.labels.LabelError: If a label cannot be resolved.
        """
        return self._head(candidate_labels)[1]

    def _head(self, candidate_labels: Sequence[str] | str | None,
              adapt: bool | None = None) -> tuple[None, list[ResolvedLabel], Any]:
        """``(None, resolved, head)`` of a label list, from the LRU cache :attr:`_heads`.

        The head is a :class:`LinearHead`, or a :class:`GroupHead` when a candidate also stands
        for seen classes below it (``"calibrated"`` scoring of a label list), or an
        :class:`~kgzsl.inference.adaptation.AdaptedHead` of either once the run is calibrated on
        images it keeps (:meth:`adapter`) and ``adapt`` (None: :attr:`adapt_to_images`) allows it.
        """
        key = _key(candidate_labels)
        fit = self.adapt_to_images if adapt is None else bool(adapt)

        def build() -> tuple[None, list[ResolvedLabel], Any]:
            resolver, every = self.resolver, self.score_rows()  # nodes change only under the cache's lock
            if key is None:  # every class: the requested nodes, not the ancestors added to connect them
                chosen = self.requested_nodes()
                nodes = range(len(self.wnids)) if chosen is None else chosen
                resolved = [ResolvedLabel(label, i, self.wnids[i], self.names[i])
                            for i, label in zip(nodes, self._node_labels(nodes))]
                return None, resolved, self._scoring.linear(every, list(nodes), self.seen_nodes())
            resolved = resolver.resolve_all([label.strip() for label in key])
            return None, resolved, self._scoring.label_head(every, resolved, self.seen_nodes(), self.wnids, fit)

        def cached() -> tuple[None, list[ResolvedLabel], Any]:
            try:
                return self._heads.get((key, fit), build)
            except NotInGraphError as exc:  # WordNet nouns that are not nodes: added as concepts, then resolved
                if not self.add_missing_labels or self.run_dir is None:
                    raise
                self._add_missing(exc)
                return self._heads.get((key, fit), build)

        try:
            return cached()
        except LabelError as exc:  # an unknown label: `kgzsl add-concept` may have stored it since the run loaded
            if isinstance(exc, NotInGraphError) or not self.refresh_concepts():
                raise
            return cached()

    def refresh_concepts(self) -> int:
        """Add the concepts another process stored in the run since this classifier loaded it (``kgzsl
        add-concept`` while a server runs); called when a label is unknown. Reads ``concepts.yaml`` only
        when it changed since the last look.

        Returns:
            How many concepts were added.
        """
        if self.run_dir is None:
            return 0
        path = Path(self.run_dir) / "concepts.yaml"
        try:
            version = path.stat().st_mtime_ns
        except OSError:
            return 0
        with self.concept_lock:
            if version == self._concepts_version:
                return 0
            from kgzsl.inference.concept_store import stored_elsewhere
            from kgzsl.inference.concepts import add_concepts

            theirs = stored_elsewhere(self)
            self._concepts_version = version
            if theirs:
                try:
                    add_concepts(self, theirs, stored=True)
                except InputError as exc:  # never expected of a list a run stored: the label's own error stands
                    logger.warning("the concepts another process stored in %s could not be added here (%s)",
                                   self.run_dir, exc)
                    return 0
                logger.info("%d concept(s) stored in %s by another process since it was loaded: added here",
                            len(theirs), self.run_dir)
            return len(theirs)

    def _add_missing(self, exc: NotInGraphError) -> None:
        """Add the WordNet nouns of ``exc`` as concepts, all or none (once; stored with the run when it is writable)."""
        with self.concept_lock:
            pending = []
            for label in exc.labels:
                try:
                    self.resolver.resolve(label)  # another thread may have added it meanwhile
                except NotInGraphError:
                    pending.append(label)
            if not pending:
                return
            from kgzsl.graph.taxonomy import TaxonomyError
            from kgzsl.inference.concept_nodes import ConceptError

            try:
                added = self.add_concepts(list(dict.fromkeys(pending))).added  # all in one propagation, or none
            except (ConceptError, TaxonomyError):
                raise exc from None  # ambiguous or not addable: the label error says what to do
            # anything else (a damaged model.safetensors, say) is the error to see: it is raised as it is
            logger.info("added %s as concept(s) of run %s (WordNet nouns that were not graph nodes)%s",
                        ", ".join(r.synset if r.label == r.synset else f"{r.label}={r.synset}" for r in added),
                        self.run_dir, "" if self.store_added_labels else ", in memory only (not stored in the run)")
            if not self.store_added_labels:
                return
            try:
                from kgzsl.inference.concept_store import store_concepts

                store_concepts(self)
            except OSError as err:  # a read-only run folder: the concepts live in this process only
                logger.warning("could not store the added concepts in %s (%s); they are kept in memory", self.run_dir, err)

    @torch.inference_mode()
    def logits(self, features: torch.Tensor, candidate_labels: Sequence[str] | None = None,
               adapt: bool | None = None) -> torch.Tensor:
        """``[B, C]`` scores of pooled backbone features against the candidates (``adapt`` as in :meth:`predict`)."""
        return self._head(candidate_labels, adapt)[2].logits(features)

    def predict_detailed(self, images: ImageSource | Sequence[ImageSource] | torch.Tensor,
                         candidate_labels: Sequence[str] | str | None = None, top_k: int | None = None,
                         batch_size: int = 32, abstain: bool = False,
                         adapt: bool | None = None) -> list[dict[str, Any]]:
        """Like :meth:`predict`, one record per image: ``{"image", "predictions"}`` or ``{"image", "error"}``.

        A bad image gets an ``error`` entry; the others are still classified. With ``abstain=True``
        each classified image's record also has ``"abstained"`` (True when its best candidate logit
        is below the calibrated threshold), ``"max_logit"`` and ``"threshold"``; its predictions are
        listed all the same.

        Raises:
            ValueError: If ``abstain=True`` and the classifier has no calibration (checked before any
                image work), or ``top_k < 1``.
        """
        _, resolved, linear = self._head(candidate_labels, adapt)  # bad labels fail before any image work
        calibration = self._abstain if abstain else None
        if abstain and calibration is None:
            raise missing_calibration(self.run_dir)
        if calibration is not None and calibration.get("candidates") is not None and not self._abstain_warned and \
                sorted(r.label for r in resolved) != sorted(map(str, calibration["candidates"])):
            self._abstain_warned = True  # once per classifier: a server would say it at every request
            logger.warning("the 'none of these' threshold was set on another label list (%d candidates); on this one "
                           "it keeps another share of in-set photos than the %.0f%% it was set to keep: calibrate "
                           "on the list you predict with for that share", len(calibration["candidates"]),
                           100 * float(calibration.get("keep", 1.0)))
        k = min(check_top_k(top_k, len(resolved) if candidate_labels is not None else TOP_K_EVERY_CLASS),
                len(resolved))
        return classify_images(self.backbone, linear, resolved, images, k=k, wnids=self.wnids, names=self.names,
                               batch_size=batch_size, max_pixels=self.max_pixels, abstain=calibration)

    def predict(self, images: ImageSource | Sequence[ImageSource] | torch.Tensor | None = None,
                candidate_labels: Sequence[str] | str | None = None, top_k: int | None = None,
                batch_size: int = 32, abstain: bool = False, *, image: ImageSource | None = None,
                hypothesis_template: str | None = None, timeout: float | None = None,
                adapt: bool | None = None) -> list[dict[str, Any]] | list[list[dict[str, Any]]] | dict[str, Any]:
        """Zero-shot classify images, like Hugging Face's ``zero-shot-image-classification`` pipeline.

        ``clf(images, candidate_labels=..., top_k=...)`` is the same call.

        Args:
            images: One image or a list of them. An image is a path, a PIL image, a numpy array
                (``HxWx3`` / ``HxWx4`` / ``HxW``, uint8 or float in [0, 1]) or a ``[3, H, W]``
                tensor (uint8 or float in [0, 1]); a ``[B, 3, H, W]`` float tensor is a batch already
                transformed with ``clf.backbone.transform``, and a uint8 one (or a float one in [0, 1]
                of another size than the transform's) a batch of raw images.
            candidate_labels: wnids, synset names or words (``"golden retriever"``); None scores
                every class the graph was built for (not the ancestors added to connect them).
            top_k: How many labels to return per image. None (the default) returns every candidate
                of a label list, as the Hugging Face pipeline does, and the 5 best without labels
                (of thousands of classes); give a number for more.
            batch_size: Images per backbone call.
            abstain: Decide per image whether to answer "none of these": the best candidate's logit
                is compared with the calibrated threshold (:attr:`abstain_calibration`, from
                ``kgzsl calibrate`` / :func:`kgzsl.tasks.abstain.calibrate_abstain`). The result
                then takes :meth:`predict_detailed`'s form: per image a record
                ``{"image", "predictions", "abstained", "max_logit", "threshold"}`` (or
                ``{"image", "error"}``), one record for one image, a list for several.
            image: Hugging Face's older name for ``images``; give one or the other.
            hypothesis_template: Accepted for code written for the Hugging Face pipeline, and
                ignored with a warning: kgzsl scores labels through WordNet and the backbone's
                rows, not through text prompts (said once per classifier).
            timeout: Accepted for code written for the Hugging Face pipeline, which fetches URLs
                within it; kgzsl fetches nothing (a URL is refused as an image), so it has no effect.
            adapt: After ``kgzsl calibrate``, whether this call fits the label list to the images
                the calibration kept (:mod:`kgzsl.inference.adaptation`); False scores with the
                centred rows only, for lists whose classes those images do not show. None (the
                default) follows :attr:`adapt_to_images`.

        Returns:
            For one image, a list of ``{"label", "wnid", "synset", "score"}`` sorted by score
            (softmax over the candidates); for several, one such list per image. A failed image
            gets an empty list (its error is logged; :meth:`predict_detailed` returns it). With
            ``abstain=True``, records as described above.

        Raises:
            kgzsl.inference.labels.LabelError: If a candidate label cannot be resolved.
            kgzsl.vision.images.ImageLoadError: If a single image given alone cannot be loaded.
            ValueError: If ``abstain=True`` and the classifier has no calibration.
        """
        if image is not None:
            if images is not None:
                raise InputError("give the images as `images` or as `image`, not both")
            images = image
        if images is None:
            raise InputError("no images given: pass a path, a PIL image, a numpy array, a tensor or a list of them")
        if hypothesis_template is not None and not self._template_warned:
            self._template_warned = True  # once per classifier: code ported from the pipeline passes it at every call
            logger.warning("hypothesis_template=%r is ignored: kgzsl scores labels through WordNet and the "
                           "backbone's rows, not through text prompts", hypothesis_template)
        images = split_pixel_batch(images, self.backbone.transform)
        if isinstance(images, (list, tuple)) or is_tensor_batch(images):
            records = self.predict_detailed(images, candidate_labels, top_k, batch_size, abstain, adapt)
            for r in records:
                if "error" in r and not abstain:  # the plain lists below would lose it: log it once here
                    logger.warning("skipping image: %s", r["error"])
            return records if abstain else [r.get("predictions", []) for r in records]
        image = load_image(images, max_pixels=self.max_pixels)  # a single image: its error is raised as is
        record = self.predict_detailed([image], candidate_labels, top_k, batch_size, abstain, adapt)[0]
        record["image"] = describe_image(images)
        return record if abstain else record["predictions"]

    __call__ = predict

    def add_concept(self, word_or_wnid: str, parents: Sequence[str] | str | None = None,
                    description: str | None = None, sense: str | None = None,
                    aliases: Sequence[str] | None = None) -> ResolvedLabel:
        """Add a concept without retraining; see :func:`kgzsl.inference.concepts.add_concept`."""
        from kgzsl.inference.concepts import add_concept

        return add_concept(self, word_or_wnid, parents=parents, description=description, sense=sense,
                           aliases=aliases)

    def add_concepts(self, taxonomy: str | Path | Sequence[Any]) -> Any:
        """Add a taxonomy file's (or list's) classes in one propagation; see :func:`kgzsl.inference.concepts.add_concepts`."""
        from kgzsl.inference.concepts import add_concepts

        return add_concepts(self, taxonomy)

    def save_concepts(self, path: str | Path) -> Path:
        """Write the added concepts as a YAML concept file; see :func:`kgzsl.inference.concepts.save_concepts`."""
        from kgzsl.inference.concepts import save_concepts

        return save_concepts(self, path)

    def __repr__(self) -> str:
        return f"ZeroShotClassifier(backbone={self.backbone.name!r}, classes={len(self.wnids)})"


def _key(candidate_labels: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """Cache key of a candidate label list."""
    if candidate_labels is None:
        return None
    try:
        # one string is a comma-separated list; an item of a list is one label, commas and all
        key = tuple(candidate_labels.split(",")) if isinstance(candidate_labels, str) else tuple(candidate_labels)
    except TypeError:  # not iterable
        raise LabelError(f"candidate_labels must be a list of strings or one comma-separated string, got "
                         f"{type(candidate_labels).__name__}; pass e.g. candidate_labels=['cat', 'dog']") from None
    odd = [label for label in key if not isinstance(label, str)]
    if odd:
        raise LabelError(f"candidate labels must be strings (words, synset names or wnids), got {odd[0]!r} "
                         f"({type(odd[0]).__name__}); pass e.g. candidate_labels=['cat', 'dog']")
    return key
