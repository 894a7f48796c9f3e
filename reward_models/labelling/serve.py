"""Serving the labelling page from Python: :class:`LabelServer` runs it on a background thread.

The pipeline's human labeler uses this::

    server = LabelServer("round1/pairs.jsonl", "labels.sqlite", per_pair=2)
    print("label at", server.start())
    progress = server.wait(until_done=True, on_progress=lambda p: print(p.answers, "/", p.target))
    server.stop()
    preferences = collect_preferences("labels.sqlite", server.pair_ids)
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from reward_models.labelling.pairs import read_label_pairs
from reward_models.labelling.records import Progress
from reward_models.labelling.server import create_app
from reward_models.labelling.store import LabelStore


def is_loopback(host: str) -> bool:
    """Whether ``host`` only reaches this machine (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _QuietHandler(WSGIRequestHandler):
    """No line per request on stderr: the console shows progress, not traffic."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LabelServer:
    """The labelling page on ``http://host:port/``, served by a background thread.

    Args:
        pairs_path: a ``PAIRS.jsonl`` to import first (idempotent); None serves the pairs already in ``db_path``.
        db_path: the SQLite database (created if missing); answers survive restarts.
        host: interface to bind; the default only accepts connections from this machine.
        port: TCP port; 0 picks a free one (see :attr:`url` after :meth:`start`).
        per_pair: answers wanted per pair.
        token: access token; when None, one is generated if ``host`` is not loopback.
        lease_seconds: how long a pair on someone's screen is kept from others.

    Raises:
        ValueError: a bad ``port``, ``per_pair`` or ``host``; malformed pairs (as file:line).
    """

    def __init__(
        self,
        pairs_path: str | os.PathLike[str] | None,
        db_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 8000,
        per_pair: int = 1,
        token: str | None = None,
        lease_seconds: float = 600.0,
    ) -> None:
        if not isinstance(host, str) or not host.strip():
            raise ValueError(
                f"host={host!r} is invalid; expected an interface such as '127.0.0.1' or '0.0.0.0'"
            )
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port={port!r} is invalid; expected an integer in 0..65535 (0: any free port)")
        if not isinstance(per_pair, int) or isinstance(per_pair, bool) or per_pair < 1:
            raise ValueError(f"per_pair={per_pair!r} is invalid; expected an integer >= 1")
        if token is not None and (not token.isascii() or not token.strip() or len(token) < 8):
            raise ValueError(
                "token is invalid; expected at least 8 ASCII characters (or leave it out to generate one)"
            )
        self.host, self.port, self.per_pair = host, port, per_pair
        self.token = token if token is not None or is_loopback(host) else secrets.token_urlsafe(24)
        self.store = LabelStore(db_path, lease_seconds=lease_seconds)
        self.pair_ids: list[str] | None = None
        if pairs_path is not None:
            pairs = read_label_pairs(Path(pairs_path))
            self.store.import_pairs(pairs)
            self.pair_ids = [pair.id for pair in pairs]
        if not self.store.has_any_pair():
            raise ValueError(f"{self.store.path} holds no pairs to label; pass a PAIRS.jsonl (--pairs)")
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The address to open (with ``?token=`` when a token is required)."""
        port = self._server.server_port if self._server is not None else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> str:
        """Bind the port and serve on a daemon thread; return :attr:`url`.

        Raises:
            RuntimeError: already started.
            OSError: the port is taken (pick another ``port``, or 0).
        """
        if self._server is not None:
            raise RuntimeError("LabelServer already started; call stop() first")
        app = create_app(self.store, self.per_pair, self.token)
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="textrl-label", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and free the port (answers are already on disk). Safe to call twice."""
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        self._server.server_close()
        self._server, self._thread = None, None

    def progress(self) -> Progress:
        """Answers so far against the target, over the imported file's pairs (all pairs without a file)."""
        return self.store.progress(self.per_pair, self.pair_ids)

    def wait(
        self,
        until_done: bool = True,
        timeout: float | None = None,
        poll_seconds: float = 1.0,
        on_progress: Callable[[Progress], None] | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> Progress:
        """Block until every pair has its answers, ``timeout`` passes, or ``stop_requested()`` is true.

        Args:
            until_done: return as soon as :attr:`Progress.done`.
            timeout: seconds before returning anyway; None waits indefinitely.
            poll_seconds: how often to read the database.
            on_progress: called with the progress whenever it changes (e.g. to update a progress bar).
            stop_requested: polled too; True returns early (the operator says "enough").

        Returns:
            The last progress read.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            progress = self.progress()
            if on_progress is not None and progress != last:
                on_progress(progress)
            last = progress
            if (until_done and progress.done) or (stop_requested is not None and stop_requested()):
                return progress
            if deadline is not None and time.monotonic() >= deadline:
                return progress
            time.sleep(poll_seconds)

    def __enter__(self) -> LabelServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
