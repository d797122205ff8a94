"""CandidateScoring: which row scores each node, and the head that scores one label list.

A :class:`~kgzsl.inference.classifier.ZeroShotClassifier` holds the nodes (their predicted rows,
ids, names); this class holds how they are scored, and owns everything that depends on it:

- the scoring mode (``"calibrated"``: the backbone's own rows for its classes; ``"predicted"``:
  every node with its predicted row, as the papers do) and the user's score calibration;
- the score rows of every node, built once (:func:`~kgzsl.inference.scoring.scoring_rows`) and
  extended when concepts are added;
- each seen node's ancestors, from which a candidate claims the seen classes below it;
- the adapter that fits a short label list to the calibration's stored images.

All of it is built on first use under one lock, so that threads serving ``predict`` share it.

Example:
    >>> scoring = CandidateScoring(backbone, "calibrated", row_scale=40.0, run_dir=Path("runs/demo"))
    >>> every = scoring.score_rows(clf.rows, clf.seen_nodes)
    >>> head = scoring.label_head(every, resolved, clf.seen_nodes(), clf.wnids)
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from kgzsl.errors import InputError
from kgzsl.inference.adaptation import AdaptedHead, ClassAdapter
from kgzsl.inference.head import INT8_MIN_ROWS, LinearHead, SplitHead
from kgzsl.inference.labels import ResolvedLabel
from kgzsl.inference.claims import GroupHead, SeenShare, claimed_seen, seen_ancestors
from kgzsl.inference.scoring import ScoreCalibration, centred_rows, predicted_rows, scoring_rows

__all__ = ["CandidateScoring", "SCORING_MODES"]

logger = logging.getLogger(__name__)

#: what ``scoring=`` accepts; ``"auto"`` is ``"calibrated"`` for a backbone with rows of its own
SCORING_MODES = ("auto", "calibrated", "predicted")


class CandidateScoring:
    """How the nodes of a classifier are scored, and the heads built from it.

    Args:
        backbone: The frozen backbone (its ``classifier_rows()`` and ``wnids`` for ``"calibrated"``).
        scoring: One of :data:`SCORING_MODES`.
        row_scale: Mean norm of the backbone's own rows; predicted rows are multiplied by it.
        run_dir: The run folder whose graph gives the seen nodes' ancestors (None: WordNet's).
        calibration: Statistics of the user's unlabelled images (``kgzsl calibrate``), or None.

    Raises:
        InputError: If ``scoring`` is not one of :data:`SCORING_MODES`.
    """

    def __init__(self, backbone: Any, scoring: str = "auto", row_scale: float = 1.0, *,
                 run_dir: Path | None = None, calibration: ScoreCalibration | None = None) -> None:
        if scoring not in SCORING_MODES:
            raise InputError(f"scoring must be 'auto', 'calibrated' or 'predicted', got {scoring!r}")
        if scoring == "auto":  # a backbone built by hand may have no rows of its own
            scoring = "calibrated" if hasattr(backbone, "classifier_rows") and hasattr(backbone, "wnids") else "predicted"
        self.backbone = backbone
        self.mode = scoring
        self.row_scale = float(row_scale)
        self.run_dir = run_dir
        self.adapt = True
        self._calibration = calibration
        self._rows: torch.Tensor | None = None  # every node's score rows, built on first use
        self._real: torch.Tensor | None = None  # the backbone's classes' score rows, built on first use
        self._adapter: ClassAdapter | None = None  # built from the calibration's features on first use
        self._ancestors: dict[int, dict[int, int]] | None = None
        self._lock = threading.Lock()

    @property
    def calibration(self) -> ScoreCalibration | None:
        """The statistics of the user's images that ``"calibrated"`` scoring centres on (None: none)."""
        return self._calibration

    def use(self, calib: ScoreCalibration | None) -> None:
        """Score through ``calib`` from now on (None: no calibration); the score rows are rebuilt on next use."""
        with self._lock:
            self._calibration, self._rows, self._real, self._adapter = calib, None, None, None

    def score_rows(self, rows: torch.Tensor, seen: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``[N, D + 1]`` rows every node is scored with; logits are ``rows @ [x, 1]``.

        Args:
            rows: ``[N, D + 1]`` predicted unit rows of every node.
            seen: Gives the ``[1000]`` node index of each backbone class (-1: not a node); called
                only when the rows are built.
        """
        if self.mode == "predicted":
            return rows * self.row_scale
        with self._lock:
            if self._rows is None:
                self._rows = scoring_rows(rows, seen(), self.backbone.classifier_rows(), self._calibration,
                                          self.row_scale)
            return self._rows

    def replace_from(self, start: int, rows: torch.Tensor) -> None:
        """Score the nodes from ``start`` on with the predicted ``rows`` ``[K, D + 1]`` (concepts added
        or re-propagated; they are never backbone classes), if the score rows are built already."""
        with self._lock:
            if self._rows is not None:
                extra = predicted_rows(rows, self._calibration, self.row_scale).to(self._rows.device)
                self._rows = torch.cat([self._rows[:start], extra])

    def seen_ancestors(self, wnids: list[str], seen: Callable[[], torch.Tensor]) -> dict[int, dict[int, int]]:
        """Each seen node's ancestors with their hop distance (read once from the run's graph, or WordNet;
        ``seen`` gives the backbone classes' nodes, as for :meth:`score_rows`)."""
        with self._lock:
            if self._ancestors is None:
                self._ancestors = seen_ancestors(self.run_dir, wnids, seen())
            return self._ancestors

    def adapter(self) -> ClassAdapter | None:
        """The :class:`~kgzsl.inference.adaptation.ClassAdapter` of the calibration's stored features
        (None: not calibrated, ``"predicted"`` scoring, or a calibration without stored features)."""
        calib = self._calibration
        if self.mode != "calibrated" or calib is None or calib.features is None:
            return None
        with self._lock:
            if self._adapter is None:
                self._adapter = ClassAdapter(calib.features)
            return self._adapter

    def linear(self, every: torch.Tensor, nodes: list[int], seen: torch.Tensor) -> LinearHead | SplitHead:
        """A head over the rows ``every[nodes]`` (read in place when ``nodes`` is every node).

        Many candidates mixing the backbone's rows and predicted ones get two heads, so that the
        predicted part keeps its low-rank int8 copy (:class:`~kgzsl.inference.head.SplitHead`).
        """
        index = torch.tensor(nodes, dtype=torch.long)
        if self.mode != "calibrated" or len(nodes) < INT8_MIN_ROWS:
            whole = len(nodes) == every.size(0) and bool((index == torch.arange(every.size(0))).all())
            return LinearHead(every if whole else every[index.to(every.device)])
        own = torch.isin(index, seen)
        parts = [(LinearHead(every[index[mask].to(every.device)]), torch.nonzero(mask).squeeze(1))
                 for mask in (~own, own) if mask.any()]
        return parts[0][0] if len(parts) == 1 else SplitHead(parts, len(nodes))

    def label_head(self, every: torch.Tensor, resolved: list[ResolvedLabel], seen: torch.Tensor,
                   wnids: list[str], adapt: bool | None = None) -> Any:
        """The head of a resolved label list: a :class:`~kgzsl.inference.claims.GroupHead` when a
        label has several senses or stands for seen classes below it (``"calibrated"`` scoring), else
        :meth:`linear`; fitted to the user's images where :meth:`adapter` applies and ``adapt`` (None:
        :attr:`adapt`) allows it."""
        head = None
        if self.mode == "calibrated":
            senses = [[r.index, *r.senses] for r in resolved]
            flat = [n for ns in senses for n in ns]
            claims = claimed_seen(flat, self.seen_ancestors(wnids, lambda: seen))
            position = {n: i for i, n in enumerate(seen.tolist()) if n >= 0}
            known = frozenset(n for n in flat if n in position)
            extra = list(dict.fromkeys(j for c in claims for j in c))
            stood_for = {position[n] for n in [*known, *extra]}
            # a shift only where the list also holds predicted rows and leaves some of the backbone's
            # classes out (with all of them in, P(K | x) = 1: the list of every class keeps its int8 head)
            shifted = 0 < len(stood_for) < len(seen) and any(n not in position for n in flat)
            if any(claims) or any(len(ns) > 1 for ns in senses) or shifted:
                rows = self._backbone_rows()
                share = SeenShare(rows, sorted(stood_for)) if shifted else None
                head = GroupHead(every, extra, rows[[position[n] for n in extra]], senses, claims, share, known)
        head = head or self.linear(every, [r.index for r in resolved], seen)
        return self._adapted(head, resolved, every.device) if (self.adapt if adapt is None else adapt) else head

    def _backbone_rows(self) -> torch.Tensor:
        """``[M, D + 1]``: every class of the backbone with the row it is scored with, its own
        (centred on the user's images when the run is calibrated), in the backbone's class order;
        built once, shared by every head."""
        with self._lock:
            if self._real is None:
                own = self.backbone.classifier_rows().float()
                self._real = own if self._calibration is None else centred_rows(own, self._calibration)
            return self._real

    def _adapted(self, head: Any, resolved: Sequence[ResolvedLabel], device: torch.device) -> Any:
        """``head`` with its candidates fitted to the user's images when :meth:`adapter` applies to them."""
        adapter = self.adapter()
        if adapter is None or not adapter.applies(len(resolved)):
            return head
        with torch.inference_mode():
            rows = adapter.rows(head.logits(adapter.features.to(device)))
        if rows is None:  # the images do not reproduce a fit (logged): the calibrated head as it is
            return head
        logger.info("%d candidates fitted to the %d images of the run's calibration (adapt_to_images=False keeps "
                    "the centred rows)", len(resolved), adapter.features.size(0))
        senses = head.senses if isinstance(head, GroupHead) else [[r.index] for r in resolved]
        return AdaptedHead(head, LinearHead(rows.to(device), int8=False), senses)
