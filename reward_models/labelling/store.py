"""The labelling database: pairs, who was shown what, and every answer, in one SQLite file.

SQLite as a real store: WAL mode (readers never block the writer), ``synchronous=FULL`` and one
``BEGIN IMMEDIATE`` transaction per answer, so an answer is on disk when :meth:`LabelStore.record_answer`
returns and a killed server (even ``SIGKILL``) loses nothing that was acknowledged. Every method opens
its own connection, so one store object serves any number of threads or processes. Queries are
parameterised; the schema is created idempotently.

Hand-out rules (:meth:`LabelStore.next_pair`): an annotator is never shown a pair twice (undo is the
one exception: it puts the undone pair back on screen); a pair is handed out until it has
``per_pair`` answers that are not skips; a pair on someone's screen (a lease of ``lease_seconds``,
renewed whenever it is shown) counts as an answer in progress, so it goes to others only if it still
needs more answers than are being given. That holds for the pair coming back too: an undone skip (a
skip frees the pair for others) or a pair whose lease expired comes back only while others are not
already giving it every answer it needs; otherwise it waits, and returns if they skip or leave it. When the only pairs left are on others' screens,
:meth:`LabelStore.next_pair` returns None and :meth:`LabelStore.remaining_for` stays above zero:
the page then waits and asks again.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from reward_models.labelling.pairs import LabelPair, unique_pairs
from reward_models.labelling.records import (
    CHOICES,
    Answer,
    AnswerConflictError,
    Assignment,
    Progress,
    UnknownPairError,
    check_annotator,
)

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    annotator TEXT NOT NULL,
    shown_left TEXT NOT NULL CHECK (shown_left IN ('a', 'b')),
    leased_at REAL NOT NULL,
    UNIQUE (pair_id, annotator)
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    annotator TEXT NOT NULL,
    shown_left TEXT NOT NULL CHECK (shown_left IN ('a', 'b')),
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'skip')),
    verdict TEXT NOT NULL CHECK (verdict IN ('a', 'b', 'tie', 'skip')),
    answered_at REAL NOT NULL,
    UNIQUE (pair_id, annotator)
);
CREATE INDEX IF NOT EXISTS answers_by_annotator ON answers (annotator, id);
"""

# Non-skip answers of pair p: what counts towards per_pair.
_COUNTED = "(SELECT COUNT(*) FROM answers x WHERE x.pair_id = p.id AND x.verdict != 'skip')"
# Leases other annotators hold on pair p (shown, unanswered, recent).
_LEASED = """(SELECT COUNT(*) FROM assignments s WHERE s.pair_id = p.id AND s.annotator != :who
    AND s.leased_at > :cutoff AND NOT EXISTS
    (SELECT 1 FROM answers x WHERE x.pair_id = s.pair_id AND x.annotator = s.annotator))"""


def _check_per_pair(per_pair: object) -> int:
    if not isinstance(per_pair, int) or isinstance(per_pair, bool) or per_pair < 1:
        raise ValueError(
            f"per_pair={per_pair!r} is invalid; expected an integer >= 1 (answers wanted per pair)"
        )
    return per_pair


def _verdict(choice: str, shown_left: str) -> str:
    if choice == "left":
        return shown_left
    if choice == "right":
        return "b" if shown_left == "a" else "a"
    return choice


class LabelStore:
    """The SQLite file behind the labelling page (created with its schema on first use).

    Args:
        path: the database file.
        lease_seconds: how long a pair on an annotator's screen is kept from others.
        rng: draws which response goes left (default: the OS's randomness).
        clock: returns Unix time (tests pass a fake one).

    Raises:
        ValueError: the file holds a database of another schema version, is not an SQLite database
            or cannot be opened (a folder, a missing folder), or ``lease_seconds`` < 0.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        lease_seconds: float = 600.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not lease_seconds >= 0:
            raise ValueError(f"lease_seconds={lease_seconds!r} is invalid; expected a number >= 0")
        self.path = Path(path)
        self.lease_seconds = float(lease_seconds)
        self._rng = rng if rng is not None else random.SystemRandom()
        self._clock = clock
        self._create_schema()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves; `with conn:` then commits or rolls back.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk before we acknowledge it
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction on a fresh connection; a write takes the lock first, so no read-then-upgrade race."""
        conn = self._connect()
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
        finally:
            conn.close()

    def _create_schema(self) -> None:
        try:
            self._create_schema_once()
        except sqlite3.DatabaseError as err:  # a folder, a missing folder, no permission, not a database
            raise ValueError(
                f"cannot use {self.path} as the labelling database ({err}); pass a --db file that is an SQLite "
                "database textrl wrote, or a new file in a folder you can write to"
            ) from err

    def _create_schema_once(self) -> None:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # stored in the file; later connections inherit it
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version != SCHEMA_VERSION:
                raise ValueError(
                    f"{self.path} holds a labelling database of schema version {version!r}; this textrl "
                    f"reads version {SCHEMA_VERSION!r}; use the textrl that wrote it, or a new --db file"
                )
        finally:
            conn.close()

    def import_pairs(self, pairs: Iterable[LabelPair]) -> int:
        """Add pairs not yet in the database, in order, in one transaction; return how many were new.

        Raises:
            ValueError: a pair has the id of a different stored pair (nothing is imported then).
            TypeError: an item is not a :class:`LabelPair`.
        """
        checked = list(pairs)
        for i, pair in enumerate(checked):
            if not isinstance(pair, LabelPair):
                raise TypeError(f"pair {i} is {type(pair).__name__}; expected LabelPair(id, prompt, a, b)")
        added = 0
        with self._transaction(write=True) as conn:
            (position,) = conn.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM pairs").fetchone()
            for pair in unique_pairs(checked):
                row = conn.execute("SELECT prompt, a, b FROM pairs WHERE id = ?", (pair.id,)).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO pairs (id, prompt, a, b, position) VALUES (?, ?, ?, ?, ?)",
                        (pair.id, pair.prompt, pair.a, pair.b, position + added),
                    )
                    added += 1
                elif tuple(row) != (pair.prompt, pair.a, pair.b):
                    raise ValueError(
                        f"pair id {pair.id!r} is already in {self.path} with other texts; a stored pair "
                        "cannot change (its answers are about the old texts): give the new pair another id"
                    )
        return added

    def pairs(self) -> list[LabelPair]:
        """Every stored pair, in import order."""
        with self._transaction(write=False) as conn:
            rows = conn.execute("SELECT id, prompt, a, b FROM pairs ORDER BY position").fetchall()
        return [LabelPair(*row) for row in rows]

    def has_any_pair(self) -> bool:
        """Whether any pair is stored."""
        with self._transaction(write=False) as conn:
            return conn.execute("SELECT 1 FROM pairs LIMIT 1").fetchone() is not None

    def has_pair(self, pair_id: str) -> bool:
        """Whether ``pair_id`` is stored."""
        with self._transaction(write=False) as conn:
            return conn.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is not None

    def next_pair(self, annotator: str, per_pair: int = 1) -> Assignment | None:
        """The pair to show ``annotator`` now, or None when nothing is left for them (for now, if others hold the rest).

        The pair already on their screen (or one they undid) comes back unchanged, unless others are
        now giving it all the answers it still needs; otherwise a new pair is drawn, its left/right
        order drawn at random and recorded.
        """
        who = check_annotator(annotator)
        _check_per_pair(per_pair)
        now = self._clock()
        params = {"who": who, "n": per_pair, "cutoff": now - self.lease_seconds, "now": now}
        with self._transaction(write=True) as conn:
            row = conn.execute(
                f"""SELECT s.id, p.id, p.prompt, p.a, p.b, s.shown_left FROM assignments s
                JOIN pairs p ON p.id = s.pair_id
                WHERE s.annotator = :who AND {_COUNTED} + {_LEASED} < :n AND NOT EXISTS
                    (SELECT 1 FROM answers x WHERE x.pair_id = s.pair_id AND x.annotator = s.annotator)
                ORDER BY s.id LIMIT 1""",
                params,
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE assignments SET leased_at = :now WHERE id = :id", {**params, "id": row[0]}
                )
                return Assignment(LabelPair(*row[1:5]), row[5])
            # The first pair (in import order) that still needs an answer nobody is already working on.
            row = conn.execute(
                f"""SELECT p.id, p.prompt, p.a, p.b FROM pairs p
                WHERE {_COUNTED} + {_LEASED} < :n AND NOT EXISTS
                    (SELECT 1 FROM assignments s WHERE s.pair_id = p.id AND s.annotator = :who)
                ORDER BY p.position LIMIT 1""",
                params,
            ).fetchone()
            if row is None:
                return None
            shown_left = self._rng.choice(("a", "b"))
            conn.execute(
                "INSERT INTO assignments (pair_id, annotator, shown_left, leased_at) VALUES (?, ?, ?, ?)",
                (row[0], who, shown_left, now),
            )
            return Assignment(LabelPair(*row), shown_left)

    def record_answer(self, annotator: str, pair_id: str, choice: str) -> Answer:
        """Store ``annotator``'s answer to ``pair_id``, committed to disk before this returns.

        Args:
            annotator: who answers.
            pair_id: a pair :meth:`next_pair` showed them.
            choice: ``"left"``, ``"right"`` (that side is better), ``"tie"`` or ``"skip"``.

        Raises:
            ValueError: ``choice`` is not one of those.
            UnknownPairError: no such pair.
            AnswerConflictError: the pair was never shown to ``annotator``, or they answered it already.
        """
        who = check_annotator(annotator)
        if choice not in CHOICES:
            raise ValueError(f"choice {choice!r} is invalid; expected one of {list(CHOICES)}")
        with self._transaction(write=True) as conn:
            if conn.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is None:
                raise UnknownPairError(f"unknown pair id {pair_id!r}; answer the pair the page shows")
            shown = conn.execute(
                "SELECT shown_left FROM assignments WHERE pair_id = ? AND annotator = ?", (pair_id, who)
            ).fetchone()
            if shown is None:
                raise AnswerConflictError(
                    f"pair {pair_id!r} was not shown to {who!r}; ask for the next pair first"
                )
            if conn.execute(
                "SELECT 1 FROM answers WHERE pair_id = ? AND annotator = ?", (pair_id, who)
            ).fetchone():
                raise AnswerConflictError(
                    f"{who!r} already answered pair {pair_id!r}; undo it to answer again"
                )
            answer = Answer(pair_id, who, shown[0], choice, _verdict(choice, shown[0]), self._clock())
            conn.execute(
                "INSERT INTO answers (pair_id, annotator, shown_left, choice, verdict, answered_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (answer.pair_id, who, answer.shown_left, choice, answer.verdict, answer.answered_at),
            )
        return answer

    def undo_last(self, annotator: str) -> Answer | None:
        """Delete ``annotator``'s latest answer and return it (None if they have none).

        The pair stays assigned to them, so :meth:`next_pair` shows it again, in the same order.
        """
        who = check_annotator(annotator)
        with self._transaction(write=True) as conn:
            row = conn.execute(
                "SELECT id, pair_id, annotator, shown_left, choice, verdict, answered_at FROM answers"
                " WHERE annotator = ? ORDER BY id DESC LIMIT 1",
                (who,),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM answers WHERE id = ?", (row[0],))
            conn.execute(
                "UPDATE assignments SET leased_at = ? WHERE pair_id = ? AND annotator = ?",
                (self._clock(), row[1], who),
            )
        return Answer(*row[1:])

    def answers(self, annotator: str | None = None) -> list[Answer]:
        """Stored answers in commit order, all or one annotator's."""
        query = "SELECT pair_id, annotator, shown_left, choice, verdict, answered_at FROM answers"
        with self._transaction(write=False) as conn:
            if annotator is None:
                rows = conn.execute(query + " ORDER BY id").fetchall()
            else:
                rows = conn.execute(query + " WHERE annotator = ? ORDER BY id", (annotator,)).fetchall()
        return [Answer(*row) for row in rows]

    def progress(self, per_pair: int = 1, pair_ids: Sequence[str] | None = None) -> Progress:
        """Answers so far against the target ``pairs * per_pair``, over all pairs or ``pair_ids``."""
        _check_per_pair(per_pair)
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                f"""SELECT p.id, {_COUNTED},
                (SELECT COUNT(*) FROM answers x WHERE x.pair_id = p.id AND x.verdict = 'skip') FROM pairs p"""
            ).fetchall()
        if pair_ids is not None:
            wanted = set(pair_ids)
            rows = [row for row in rows if row[0] in wanted]
        return Progress(
            pairs=len(rows),
            per_pair=per_pair,
            answers=sum(min(counted, per_pair) for _, counted, _ in rows),
            skips=sum(skips for _, _, skips in rows),
            complete_pairs=sum(counted >= per_pair for _, counted, _ in rows),
        )

    def remaining_for(self, annotator: str, per_pair: int = 1) -> int:
        """Pairs ``annotator`` could still be shown (the one on their screen and ones others hold included)."""
        who = check_annotator(annotator)
        _check_per_pair(per_pair)
        with self._transaction(write=False) as conn:
            (count,) = conn.execute(
                f"""SELECT COUNT(*) FROM pairs p WHERE {_COUNTED} < :n AND NOT EXISTS
                (SELECT 1 FROM answers x WHERE x.pair_id = p.id AND x.annotator = :who)""",
                {"who": who, "n": per_pair},
            ).fetchone()
        return int(count)
