"""Pairs, files and HTTP helpers shared by the labelling tests (a module, so tests import it by name)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
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
        choice = {shown.shown_left: "left"}.get(verdict, "right") if verdict in ("a", "b") else verdict
        store.record_answer(annotator, shown.pair.id, choice)
        count += 1
    return count


def start_cli_server(*args: str, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Run ``python -m reward_models.labelling ARGS --port 0`` from this tree; return it and its URL."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reward_models.labelling", *args, "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(r"Labelling page: (http://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError("the labelling server did not start:\n" + "".join(seen))
