"""Run the app: :func:`serve` (what ``kgzsl serve`` does) and :func:`running_server` (a server in a thread).

Example:
    >>> serve("runs/dgp", port=8000)                        # blocks; Ctrl-C stops it
    >>> with running_server(create_app(clf)) as url:        # e.g. in a test or a notebook
    ...     requests.get(f"{url}/health").json()
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from kgzsl.errors import MissingPackageError, SetupError
from kgzsl.serve.app import create_app
from kgzsl.serve.inputs import ServeLimits

__all__ = ["serve", "running_server"]

logger = logging.getLogger(__name__)


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingPackageError("serving needs uvicorn: pip install 'kgzsl[serve]'") from exc
    return uvicorn


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          limits: ServeLimits | None = None, log_level: str = "info", shutdown_timeout: float = 10.0,
          adapt: bool = True, finetuned: bool = True, cors_origins: Sequence[str] = ()) -> None:
    """Load a run once and serve it over HTTP until interrupted.

    On Ctrl-C or SIGTERM the server stops accepting connections and lets the requests in progress
    finish for at most ``shutdown_timeout`` seconds; then it cancels them (a client stalled mid-upload
    cannot hold the shutdown) and returns.

    Args:
        run: A run folder written by ``kgzsl train``.
        host: Interface to listen on (``0.0.0.0`` for every interface).
        port: TCP port.
        device: Where the classifier runs (``"auto"``, ``"cpu"``, ``"cuda"``...).
        limits: What one request may carry (default :class:`ServeLimits`).
        log_level: uvicorn's log level (``"warning"`` leaves only problems).
        shutdown_timeout: Most seconds a shutdown waits for the requests in progress.
        adapt: On a calibrated run, whether label lists are fitted to the calibration's images when a
            request does not say (its ``adapt`` parameter); False: the centred rows only.
        finetuned: After ``kgzsl finetune``, serve with the fine-tuned backbone (the default); False:
            with the original weights the rows were trained for.
        cors_origins: Origins of web pages that may call the API (:func:`~kgzsl.serve.app.create_app`).

    Raises:
        kgzsl.inference.run_folder.RunNotFoundError: If ``run`` is not a finished run.
        kgzsl.errors.SetupError: If ``host:port`` cannot be listened on (the port is in use...).
    """
    from kgzsl.inference.classifier import ZeroShotClassifier

    uvicorn = _uvicorn()
    _check_port(host, port)  # before the run loads, and before "serving on" is logged
    clf = ZeroShotClassifier.load(run, device=device, finetuned=finetuned)
    clf.adapt_to_images = adapt
    logger.info("serving %r (%d classes) on http://%s:%d", clf, len(clf.wnids), host, port)
    uvicorn.run(create_app(clf, limits, cors_origins), host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=shutdown_timeout)


def _check_port(host: str, port: int) -> None:
    """Bind ``host:port`` as uvicorn will (every address of the host, reusing TIME_WAIT ports), then let go.

    Raises:
        kgzsl.errors.SetupError: If the host is not this machine's or the port cannot be bound (in use, privileged).
    """
    def refused(what: str, option: str) -> SetupError:
        return SetupError(f"{what}; pick another with {option}=", cli_message=f"{what}; pick another with --{option}")

    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise refused(f"host {host} is unknown ({exc.strerror})", "host") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise refused(f"host {host} is not an address of this machine", "host") from None
                problem = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
                raise refused(f"port {port} on {host} {problem}", "port") from None


@contextlib.contextmanager
def running_server(app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn from a background thread for the duration of the block.

    Args:
        app: An ASGI app (:func:`~kgzsl.serve.app.create_app`'s).
        host: Interface to listen on.
        port: TCP port; 0 takes a free one.
        timeout: Seconds to wait for the server to start.

    Yields:
        The server's base URL, ``http://HOST:PORT``.

    Raises:
        kgzsl.errors.SetupError: If the server does not start (the port is taken...).
    """
    uvicorn = _uvicorn()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="kgzsl-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise SetupError(f"the server did not start on {host}:{port}; is the port taken?")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)
