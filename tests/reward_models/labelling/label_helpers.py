"""Pairs, files and HTTP helpers shared by the labelling tests (a module, so tests import it by name)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from reward_models.labelling import LabelPair

REPO_ROOT = Path(__file__).resolve().parents[3]

PAIRS = [
    LabelPair("p0", "the film", " was wonderful and fun", " was awful and boring"),
    LabelPair("p1", "this movie was", " great", " terrible"),
    LabelPair("p2", "the story is", " beautiful", " dull"),
    LabelPair("p3", "the actors", " are brilliant", " are poor"),
    LabelPair("p4", "it was a", " happy ending", " sad ending"),
]


def write_pairs(path: Path, pairs: list[LabelPair] | None = None) -> Path:
    lines = [json.dumps({"id": p.id, "prompt": p.prompt, "a": p.a, "b": p.b}) for p in (pairs or PAIRS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def post(base: str, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """POST JSON to a served instance; (status, decoded body) also for 4xx."""
    request = urllib.request.Request(
        base.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def answer_as(store: Any, annotator: str, verdicts: dict[str, str], per_pair: int = 99) -> int:
    """Let ``annotator`` answer every pair handed to them: ``verdicts[pair_id]`` is ``a``/``b``/``tie``,
    a missing pair is skipped. Returns how many answers were stored."""
    count = 0
    while (shown := store.next_pair(annotator, per_pair)) is not None:
        verdict = verdicts.get(shown.pair.id, "skip")
        if verdict in ("a", "b"):
            choice = "left" if verdict == shown.shown_left else "right"
        else:
            choice = verdict
        store.record_answer(annotator, shown.pair.id, choice)
        count += 1
    return count
