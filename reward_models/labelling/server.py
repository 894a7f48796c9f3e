"""The labelling web app (Flask): one static page and a small JSON API over :class:`LabelStore`.

API (every body is JSON, ``Content-Type: application/json``; errors are ``{"error": message}`` with a
4xx status and store nothing):

- ``POST /api/next`` ``{"annotator"}`` -> ``{"pair": {"id", "prompt", "left", "right"} | null, "you": {...}, "progress": {...}}``
- ``POST /api/answer`` ``{"annotator", "pair_id", "choice"}`` (``left``/``right``/``tie``/``skip``) -> answered
  only after the answer is committed to disk.
- ``POST /api/undo`` ``{"annotator"}`` -> ``{"undone": {"pair_id", "choice"} | null}``
- ``GET /api/progress`` -> overall progress.

Security: model output is untrusted, so the page writes every text with ``textContent`` and the
Content-Security-Policy allows only our own script and style (no inline script, Trusted Types on,
so an ``innerHTML`` assignment would throw). With a token, every request must carry it (``?token=``
once, which sets a cookie, or an ``X-Label-Token`` header). Without one, requests must name a loopback
host, so a web page elsewhere cannot reach the server through DNS rebinding; requiring a JSON
content type keeps other sites' forms from posting answers.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, Response, jsonify, redirect, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from reward_models.labelling.records import AnswerConflictError, Assignment, UnknownPairError, check_annotator
from reward_models.labelling.store import LabelStore

TOKEN_COOKIE = "textrl_label_token"
TOKEN_HEADER = "X-Label-Token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)
MAX_BODY_BYTES = 64 * 1024


class BadRequest(Exception):
    """A request we refuse with ``status`` and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _hostname(host_header: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``, ``"localhost:8000"`` -> ``"localhost"``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _json_body(*fields: str) -> dict[str, Any]:
    """The request's JSON object, with exactly ``fields``."""
    if not request.is_json:
        raise BadRequest(415, "send the body as JSON with Content-Type: application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(400, f"malformed body: expected a JSON object with keys {list(fields)}")
    unknown = sorted(set(body) - set(fields))
    missing = [key for key in fields if key not in body]
    if unknown or missing:
        raise BadRequest(
            400, f"body keys are wrong (unknown {unknown}, missing {missing}); expected {list(fields)}"
        )
    return body


def _annotator(body: dict[str, Any]) -> str:
    try:
        return check_annotator(body["annotator"])
    except (TypeError, ValueError) as err:
        raise BadRequest(400, str(err)) from None


def _pair_json(assignment: Assignment | None) -> dict[str, str] | None:
    if assignment is None:
        return None
    pair = assignment.pair
    return {"id": pair.id, "prompt": pair.prompt, "left": assignment.left, "right": assignment.right}


def create_app(store: LabelStore, per_pair: int = 1, token: str | None = None) -> Flask:
    """The Flask app serving the labelling page over ``store``.

    Args:
        store: the database.
        per_pair: answers wanted per pair.
        token: when given, every request must carry it; when None, only loopback hosts are served.
    """
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def progress_json() -> dict[str, Any]:
        progress = store.progress(per_pair)
        return {
            "answers": progress.answers,
            "target": progress.target,
            "pairs": progress.pairs,
            "complete_pairs": progress.complete_pairs,
            "done": progress.done,
        }

    def you_json(annotator: str) -> dict[str, int]:
        return {
            "answered": len(store.answers(annotator)),
            "remaining": store.remaining_for(annotator, per_pair),
        }

    @app.before_request
    def guard() -> BaseResponse | None:
        if token is None:
            if _hostname(request.host) not in LOOPBACK_NAMES:
                raise BadRequest(403, f"host {request.host!r} refused: this server answers only on localhost")
            return None
        supplied = (
            request.args.get("token")
            or request.headers.get(TOKEN_HEADER)
            or request.cookies.get(TOKEN_COOKIE)
        )
        if not supplied or not secrets.compare_digest(supplied.encode(), token.encode()):
            raise BadRequest(401, "access token missing or wrong: open the URL `textrl label` printed")
        if "token" in request.args and request.method == "GET":
            # Move the token from the address bar (and history) into a cookie scripts cannot read.
            response = redirect(request.path, code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
            return response
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(BadRequest)
    def refused(err: BadRequest) -> tuple[Response, int]:
        return jsonify(error=str(err)), err.status

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> tuple[Response, int]:
        return jsonify(error=err.description), err.code or 500

    @app.get("/")
    def index() -> Response:
        return app.send_static_file("index.html")

    @app.post("/api/next")
    def next_pair() -> Response:
        annotator = _annotator(_json_body("annotator"))
        pair = _pair_json(store.next_pair(annotator, per_pair))
        return jsonify(pair=pair, you=you_json(annotator), progress=progress_json())

    @app.post("/api/answer")
    def answer() -> Response:
        body = _json_body("annotator", "pair_id", "choice")
        annotator = _annotator(body)
        if not isinstance(body["pair_id"], str) or not isinstance(body["choice"], str):
            raise BadRequest(400, "pair_id and choice must be strings")
        try:
            saved = store.record_answer(annotator, body["pair_id"], body["choice"])
        except UnknownPairError as err:
            raise BadRequest(404, str(err)) from None
        except AnswerConflictError as err:
            raise BadRequest(409, str(err)) from None
        except ValueError as err:
            raise BadRequest(400, str(err)) from None
        return jsonify(saved={"pair_id": saved.pair_id, "choice": saved.choice}, progress=progress_json())

    @app.post("/api/undo")
    def undo() -> Response:
        undone = store.undo_last(_annotator(_json_body("annotator")))
        return jsonify(
            undone=None if undone is None else {"pair_id": undone.pair_id, "choice": undone.choice}
        )

    @app.get("/api/progress")
    def progress() -> Response:
        return jsonify(progress_json())

    return app
