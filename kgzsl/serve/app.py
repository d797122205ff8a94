"""The HTTP API and page over one loaded :class:`~kgzsl.inference.classifier.ZeroShotClassifier`.

Endpoints (JSON unless said otherwise; ``/openapi.json`` describes them):

- ``GET /`` — the page (``static/``: plain HTML, CSS and JS served by the package);
- ``GET /health`` — run name, backbone, node count, whether the run can abstain, the limits;
- ``POST /predict`` — an image (JSON in the Hugging Face shape, or a multipart form: see
  :mod:`kgzsl.serve.inputs`) and ``candidate_labels`` / ``top_k`` / ``abstain`` → ``predict``'s
  result: a list of ``{"label", "wnid", "synset", "score"}`` sorted by score; with ``abstain`` the
  record ``{"predictions", "abstained", "max_logit", "threshold"}``;
- ``POST /explain`` — an image and one ``label`` → :func:`kgzsl.tasks.explain.explain`'s JSON, or its
  drawing as ``image/png`` with ``?format=png``;
- ``GET /labels?q=cat`` — label suggestions for autocompletion (:class:`~kgzsl.serve.labels.LabelIndex`).

Bad input is a 4xx answer with a JSON body ``{"detail": MESSAGE, "kind": ERROR CLASS, "error": MESSAGE}``:
a :class:`~kgzsl.errors.InputError` (a bad image, an unknown label with its close matches, a
parameter the endpoint does not take, ...) is 400, a too large body 413, a wrong content type 415,
a POST from a web page of another origin 403 (:class:`SameOriginPosts`).
A client that disconnects before its body arrived is one INFO line. Any other exception is a bug: a
logged 500.
Requests carry images and labels, never paths: nothing on the server's disk is read or written
from request data. The work of a request runs in the server's thread pool, so requests run in
parallel and a slow upload holds no thread while it arrives.

Example:
    >>> from fastapi.testclient import TestClient
    >>> client = TestClient(create_app(ZeroShotClassifier.load("runs/dgp")))
    >>> client.post("/predict", files={"image": open("cat.jpg", "rb")}, data={"candidate_labels": "cat,dog"}).json()
    [{'label': 'cat', 'wnid': 'n02121620', 'synset': 'cat.n.01', 'score': 0.98}, ...]
"""

from __future__ import annotations

import logging
import shlex
import threading
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from kgzsl._version import __version__
from kgzsl.errors import InputError, KgzslError, MissingPackageError
from kgzsl.serve.inputs import RequestError, ServeLimits, candidate_labels, flag, one_label, \
    parse_image_request, read_body, top_k
from kgzsl.serve.labels import LabelIndex
from kgzsl.serve.openapi import ERRORS, EXPLAIN_ANSWERS, EXPLAIN_BODY, PREDICT_ANSWERS, PREDICT_BODY

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingPackageError("serving needs FastAPI and uvicorn: pip install 'kgzsl[serve]'") from exc

__all__ = ["create_app", "ZeroShotService", "SameOriginPosts"]

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"


class ZeroShotService:
    """What the endpoints do with the classifier, as plain functions of checked request data.

    Args:
        clf: The loaded classifier (its ``predict`` is thread-safe).
        limits: What one request may carry.
    """

    #: the parameters of ``POST /predict`` (any other is refused)
    PREDICT_PARAMETERS = ("candidate_labels", "top_k", "abstain", "adapt")
    #: the parameters of ``POST /explain``
    EXPLAIN_PARAMETERS = ("label", "top_k")

    def __init__(self, clf: Any, limits: ServeLimits) -> None:
        self.clf = clf
        self.limits = limits
        self._labels = (len(clf.wnids), self._index(len(clf.wnids)))
        self._labels_lock = threading.Lock()

    @property
    def labels(self) -> LabelIndex:
        """The suggestion index over the classifier's nodes, rebuilt once concepts were added (a
        ``/predict`` label that was a WordNet noun but not a node, ``"pagoda"``, is suggested next)."""
        with self._labels_lock:
            count, index = self._labels
            # nodes are only ever appended, and extend() appends the lemmas last: the first `nodes` are whole
            nodes = len(self.clf.lemmas)
            if nodes != count:
                index = self._index(nodes)
                self._labels = (nodes, index)
            return index

    def _index(self, nodes: int) -> LabelIndex:
        """The suggestion index over the first ``nodes`` nodes, the backbone's own classes suggested first."""
        seen = [int(i) for i in self.clf.seen_nodes() if 0 <= i < nodes]
        return LabelIndex(self.clf.wnids[:nodes], self.clf.names[:nodes], self.clf.lemmas[:nodes], preferred=seen)

    def suggest(self, query: str, limit: int) -> list[dict[str, str]]:
        """:meth:`LabelIndex.suggest`, each suggestion with its WordNet ``definition`` ("" for a class of
        your own, or without WordNet), so that a sense can be told from another before it is used."""
        from kgzsl.graph.wordnet import gloss

        found = self.labels.suggest(query, limit)
        for suggestion in found:
            suggestion["definition"] = gloss(suggestion["synset"])
        return found

    def health(self) -> dict[str, Any]:
        """The run this server answers for."""
        run_dir = self.clf.run_dir
        return {"status": "ok", "kgzsl": __version__,
                "run": self.clf.summary.get("name") or (run_dir.name if run_dir else None),
                "model": self.clf.summary.get("model"), "backbone": self.clf.backbone.name,
                "nodes": len(self.clf.wnids), "abstain": self.clf.abstain_calibration is not None,
                "limits": {"max_body_bytes": self.limits.max_body_bytes, "max_pixels": self.limits.max_pixels,
                           "max_labels": self.limits.max_labels}}

    def predict(self, image: bytes, parameters: dict[str, Any]) -> Any:
        """``predict``'s result for an encoded image and the request's parameters.

        Raises:
            kgzsl.errors.InputError: For a bad image, bad parameters or labels that do not resolve.
        """
        from kgzsl.vision.images import load_image

        labels = candidate_labels(parameters.get("candidate_labels"), self.limits)
        k = top_k(parameters.get("top_k"))
        abstain = flag("abstain", parameters.get("abstain"))
        # left out: the server's setting (kgzsl serve --no-adapt); false: no fitting to the calibration's images
        adapt = None if parameters.get("adapt") is None else flag("adapt", parameters.get("adapt"))
        self.clf.resolve_labels(labels)  # bad labels fail before any image work (the head is cached for predict)
        picture = load_image(image, max_pixels=self.limits.max_pixels)
        result = self.clf.predict(picture, labels, top_k=k, abstain=abstain, adapt=adapt)
        if abstain:
            result.pop("image", None)  # the upload has no name
        return result

    def explain(self, image: bytes, parameters: dict[str, Any]) -> dict[str, Any]:
        """:func:`kgzsl.tasks.explain.explain` for an encoded image and one label.

        Raises:
            kgzsl.errors.InputError: For a bad image, a missing or unknown label.
        """
        from kgzsl.inference.concept_state import concept_graph
        from kgzsl.tasks.explain import explain
        from kgzsl.vision.images import load_image

        label = one_label(parameters.get("label"), self.limits)
        k = top_k(parameters.get("top_k"))
        # the label resolves (and a missing WordNet noun is added) as predict's labels are, before the
        # image is decoded; explain then scores it by the sense the image fits best, as predict reports it
        self.clf.resolve_labels([label])
        picture = load_image(image, max_pixels=self.limits.max_pixels)
        concept_graph(self.clf)  # loaded once, under the classifier's concept_lock
        result = explain(self.clf, picture, label, top_k=k)
        result.pop("image", None)
        result["label"] = label
        return result


def error_response(status: int, detail: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer: ``{"detail", "kind"}``, and ``"error"`` (the same text), which Hugging Face's
    clients (``huggingface_hub.InferenceClient``) show."""
    return JSONResponse({"detail": detail, "kind": kind, "error": detail}, status_code=status, headers=headers)


def _error(status: int, exc: Exception, run_dir: Path | None = None) -> JSONResponse:
    from kgzsl.inference.labels import LabelError

    detail = exc.cli_text() if isinstance(exc, LabelError) else str(exc)  # the fix is the operator's: commands
    if isinstance(exc, LabelError) and "kgzsl add-concept RUN" in detail:  # on the server's run; no restart
        # the client is told what the operator can do; the run's path on the server stays in the server's log
        run = shlex.quote(str(run_dir)) if run_dir is not None else "RUN"
        logger.info("a request's label: %s", detail.replace("kgzsl add-concept RUN", f"kgzsl add-concept {run}"))
        detail += " (on the server, RUN being the run it serves; the server sees it at the next request)"
    return error_response(status, detail, type(exc).__name__)


async def _on_image(request: Request, service: ZeroShotService, work: Callable[[bytes, dict[str, Any]], Any],
                    accepted: tuple[str, ...], query: tuple[str, ...] = ()) -> Any:
    """Read the body on the event loop, then parse it (refusing parameters not in ``accepted``, and query
    parameters not in ``query``) and do ``work(image, parameters)`` in one worker thread."""
    odd = [name for name in request.query_params if name not in query]
    if odd:  # "/predict?candidate_labels=cat,dog" would otherwise rank every class
        where = "takes them in the JSON body's \"parameters\" or as form fields" if odd[0] in accepted else \
            (f"takes no such parameter: its parameters (accepted: {', '.join(accepted)}) go in the JSON body's "
             "\"parameters\" or in form fields")
        raise RequestError(f"unknown query parameter{'s' if len(odd) > 1 else ''}: "
                           f"{', '.join(repr(n) for n in odd)}; {request.url.path} {where}")
    body = await read_body(request.headers, request.stream(), service.limits.max_body_bytes)
    content_type = request.headers.get("content-type")
    return await run_in_threadpool(lambda: work(*parse_image_request(content_type, body, accepted)))


class SameOriginPosts:
    """ASGI middleware refusing (403) a POST that a web page of another origin sends.

    A browser sends a form to any server without asking it first, and a ``/predict`` naming a WordNet
    noun the run lacks adds it to the run: any site open in the browser could write into the served
    run. Browsers name the page's origin in an ``Origin`` header; a POST whose origin is neither this
    server (its ``Host``, or ``X-Forwarded-Host`` behind a reverse proxy) nor one of ``allowed`` is
    refused before its body is read. Clients that are not browsers (curl, Python) send no ``Origin``
    and are not affected.

    Args:
        app: The application to guard.
        allowed: Origins whose pages may call the API (``kgzsl serve --cors-origin``), e.g.
            ``http://localhost:3000``.
    """

    def __init__(self, app: Any, allowed: Sequence[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(o.rstrip("/") for o in allowed)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            origin = headers.get("origin")
            # the server's own host, as the client saw it: Host, or behind a reverse proxy X-Forwarded-Host
            # (a header no page can add to a request the browser sends without asking the server first)
            forwarded = [h.strip() for h in headers.get("x-forwarded-host", "").split(",") if h.strip()]
            page = urlsplit(origin or "")
            # nginx's `$host` drops the port: a forwarded host without one stands for the page's host name
            own = page.netloc in {headers.get("host"), *forwarded} or page.hostname in {h for h in forwarded
                                                                                      if ":" not in h}
            if origin is not None and origin.rstrip("/") not in self.allowed and not own:
                detail = (f"a POST from a page of another origin ({origin}) is refused; if that page is yours, "
                          f"start the server with --cors-origin {origin}")
                logger.warning("refused %s %s from a page of %s (not allowed with --cors-origin)", scope["method"],
                               scope["path"], origin)
                await error_response(403, detail, "CrossOriginError")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(clf: Any, limits: ServeLimits | None = None, cors_origins: Sequence[str] = ()) -> FastAPI:
    """The FastAPI application serving ``clf``.

    Args:
        clf: A loaded :class:`~kgzsl.inference.classifier.ZeroShotClassifier`.
        limits: What one request may carry (default :class:`ServeLimits`).
        cors_origins: Origins of web pages allowed to call the API (CORS), e.g.
            ``["http://localhost:3000"]``; a POST from a page of any other origin is refused (403,
            :class:`SameOriginPosts`). The server's own page is always allowed.

    Returns:
        The app (``app.state.service`` is its :class:`ZeroShotService`); run it with uvicorn, or
        :func:`kgzsl.serve.server.serve`.
    """
    service = ZeroShotService(clf, limits or ServeLimits())
    # the interactive /docs and /redoc pages load their scripts from a CDN: left out (offline);
    # /openapi.json describes the API
    app = FastAPI(title="kgzsl", version=__version__, docs_url=None, redoc_url=None,
                  description="Knowledge-graph zero-shot image classification of one trained run.")
    app.state.service = service
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SameOriginPosts, allowed=list(cors_origins))
    if cors_origins:  # added last, so it runs first: preflight requests are answered before the origin check
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[o.rstrip("/") for o in cors_origins],
                           allow_methods=["GET", "POST"], allow_headers=["*"])

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc)

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return _error(400, exc, clf.run_dir)

    @app.exception_handler(KgzslError)
    async def server_side_error(_: Request, exc: KgzslError) -> JSONResponse:
        logger.error("request failed on the server's side: %s", exc)
        return _error(500, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(422, message, "RequestValidationError")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, exc.detail, "HTTPException", exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:
        # the client closed the connection mid-upload: nothing to answer, nothing wrong on our side
        logger.info("%s %s: the client disconnected before its request body arrived", request.method,
                    request.url.path)
        return Response(status_code=400)  # never sent: the connection is gone

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error (a bug in kgzsl)")
        return _error(500, exc)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    def health() -> dict[str, Any]:
        """The run this server answers for: name, model, backbone, node count, abstain, limits."""
        return service.health()

    @app.post("/predict", openapi_extra=PREDICT_BODY, responses=PREDICT_ANSWERS)
    async def predict(request: Request) -> Any:
        """Zero-shot classify one image. JSON ``{"inputs": base64, "parameters": {"candidate_labels": [...],
        "top_k": 5, "abstain": false, "adapt": true}}`` or a multipart form (``image`` file, ``candidate_labels``
        comma-separated, ``top_k``, ``abstain``, ``adapt``). No candidate labels: every class of the graph. No
        ``top_k``: every candidate of a list, the 5 best classes without one. ``adapt`` false: on a calibrated
        run, the list is not fitted to the calibration's images. Any other field, key or query parameter is
        refused (400)."""
        return await _on_image(request, service, service.predict, service.PREDICT_PARAMETERS)

    @app.post("/explain", openapi_extra=EXPLAIN_BODY, responses=EXPLAIN_ANSWERS)
    async def explain(request: Request, fmt: str = Query("json", alias="format", pattern="^(json|png)$")) -> Any:
        """Why one label scored as it did for an image: the seen classes and WordNet paths that carried
        its row. Parameters ``label`` and ``top_k``; ``?format=png`` answers the drawing as a PNG."""
        result = await _on_image(request, service, service.explain, service.EXPLAIN_PARAMETERS, ("format",))
        if fmt == "png":
            from kgzsl.tasks.explain import explanation_png

            return Response(await run_in_threadpool(explanation_png, result), media_type="image/png")
        return result

    @app.get("/labels", responses={422: ERRORS[422]})
    def labels(q: str = Query(..., min_length=1, max_length=100), limit: int = Query(10, ge=1, le=50)
               ) -> list[dict[str, str]]:
        """Label suggestions for what has been typed (``q``): lemma names, synset names, wnids, with
        each sense's WordNet definition."""
        return service.suggest(q, limit)

    return app
