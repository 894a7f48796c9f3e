"""People as the pipeline's labeler: each round's pairs are served on the labelling page.

``textrl pipeline --labeler human`` serves the round's ``pairs.jsonl`` with
:class:`reward_models.labelling.LabelServer`, prints the URL (and the token when the page is exposed
beyond this machine), shows the count as people answer, and returns when every pair has its
answers, when ``label_timeout`` passes, or when the operator presses Enter. ``--labeler mixed``
does the same, then lets the simulated annotator label the pairs people left (ties, skips, pairs
nobody reached), so a round always trains on all its pairs.

Answers live in one SQLite database in the run directory (``labels.sqlite``), committed one by one:
a stopped or resumed run keeps every acknowledged answer, and the round picks up where people were.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.pipeline.labelers import Choice, Labeler, Pair
from reward_models.labelling import LabelServer, Progress, collect_preferences


def _enter_pressed() -> Callable[[], bool]:
    """A flag raised when the operator presses Enter (never, when stdin is not a terminal)."""
    pressed = threading.Event()
    if sys.stdin is not None and sys.stdin.isatty():

        def read() -> None:
            sys.stdin.readline()
            pressed.set()

        threading.Thread(target=read, name="textrl-label-enter", daemon=True).start()
    return pressed.is_set


class HumanLabeler:
    """Serves each round's pairs to people and returns their majority-voted choices.

    Args:
        db_path: the labelling database (created if missing; reused across rounds and restarts).
        host: interface to bind; anything but loopback requires the printed access token.
        port: TCP port (0: any free port).
        per_pair: answers wanted per pair (the majority decides; ties are left out).
        token: access token; None generates one when ``host`` is not loopback.
        timeout: seconds to wait per round before going on with what is labelled (None: no limit).
        fallback: labels the pairs people left (``--labeler mixed``); None trains on people's only.
        on_start: called with the running server (e.g. to tell people the URL another way).
        stop_requested: polled while waiting; True ends the round's labelling (default: Enter).
    """

    def __init__(
        self,
        db_path: str | Path,
        host: str = "127.0.0.1",
        port: int = 8000,
        per_pair: int = 1,
        token: str | None = None,
        timeout: float | None = None,
        fallback: Labeler | None = None,
        on_start: Callable[[LabelServer], None] | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.host, self.port, self.per_pair, self.token = host, port, per_pair, token
        self.timeout = timeout
        self.fallback = fallback
        self.on_start = on_start
        self.stop_requested = stop_requested

    def label(self, pairs: Sequence[Pair], pairs_file: Path) -> dict[str, Choice]:
        from rich.console import Console

        console = Console(soft_wrap=True, highlight=False)
        server = LabelServer(pairs_file, self.db_path, self.host, self.port, self.per_pair, self.token)
        with server:
            console.print(f"[bold]Label this round's {len(pairs)} pairs:[/] {server.url}")
            if server.token:
                console.print(f"access token: {server.token} (the URL carries it)", markup=False)
            console.print("Answers are stored as they are given; press Enter to go on with what is labelled.")
            if self.on_start is not None:
                self.on_start(server)
            final = server.wait(
                until_done=True,
                timeout=self.timeout,
                on_progress=lambda p: _show(console, p),
                stop_requested=self.stop_requested or _enter_pressed(),
            )
        labels = choices_from_votes(pairs, self.db_path)
        console.print(f"people labelled {len(labels)} of {len(pairs)} pairs ({final.answers} answers)")
        left = [pair for pair in pairs if pair.id not in labels]
        if self.fallback is not None and left:
            labels.update(self.fallback.label(left, pairs_file))
            console.print(f"the simulated annotator labelled the other {len(left)}")
        return labels


def _show(console: Any, progress: Progress) -> None:
    console.print(
        f"answers {progress.answers}/{progress.target} · pairs complete {progress.complete_pairs}/{progress.pairs}"
    )


def choices_from_votes(pairs: Sequence[Pair], db_path: str | Path) -> dict[str, Choice]:
    """``{pair id: "a" | "b"}`` of the pairs whose vote has a majority (ties and skips left out)."""
    voted = collect_preferences(db_path, [pair.id for pair in pairs])
    winners: Mapping[tuple[str, str, str], str] = {(p.prompt, p.chosen, p.rejected): p.chosen for p in voted}
    choices: dict[str, Choice] = {}
    for pair in pairs:
        if (pair.prompt, pair.a, pair.b) in winners:
            choices[pair.id] = "a"
        elif (pair.prompt, pair.b, pair.a) in winners:
            choices[pair.id] = "b"
    return choices


__all__ = ["HumanLabeler", "choices_from_votes"]
