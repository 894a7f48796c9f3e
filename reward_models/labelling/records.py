"""What the labelling store hands out and keeps: assignments, answers, progress, and its errors."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from reward_models.labelling.pairs import LabelPair

CHOICES = ("left", "right", "tie", "skip")
MAX_ANNOTATOR_LENGTH = 64


class LabelStoreError(ValueError):
    """A request the store refuses; nothing was written."""


class UnknownPairError(LabelStoreError):
    """The pair id is not in the database."""


class AnswerConflictError(LabelStoreError):
    """The answer does not fit the annotator's history (pair not shown to them, or already answered)."""


@dataclass(frozen=True)
class Assignment:
    """A pair handed to an annotator, in the order it is shown.

    Attributes:
        pair: the pair.
        shown_left: ``"a"`` or ``"b"``: which response is on the left.
    """

    pair: LabelPair
    shown_left: str

    @property
    def left(self) -> str:
        """The response shown on the left."""
        return self.pair.a if self.shown_left == "a" else self.pair.b

    @property
    def right(self) -> str:
        """The response shown on the right."""
        return self.pair.b if self.shown_left == "a" else self.pair.a


@dataclass(frozen=True)
class Answer:
    """One stored answer.

    Attributes:
        pair_id: the pair answered.
        annotator: who answered.
        shown_left: ``"a"`` or ``"b"``, the response that was on the left.
        choice: what was clicked: ``"left"``, ``"right"``, ``"tie"`` or ``"skip"``.
        verdict: the choice in the pair's own terms: ``"a"``, ``"b"``, ``"tie"`` or ``"skip"``.
        answered_at: Unix time of the commit.
    """

    pair_id: str
    annotator: str
    shown_left: str
    choice: str
    verdict: str
    answered_at: float


@dataclass(frozen=True)
class Progress:
    """How far labelling has come.

    Attributes:
        pairs: pairs counted.
        per_pair: answers wanted per pair.
        answers: non-skip answers counting towards the target (at most ``per_pair`` per pair).
        skips: skip answers (they do not count: a skipped pair goes to someone else).
        complete_pairs: pairs with ``per_pair`` non-skip answers.
    """

    pairs: int
    per_pair: int
    answers: int
    skips: int
    complete_pairs: int

    @property
    def target(self) -> int:
        """Answers wanted in all: ``pairs * per_pair``."""
        return self.pairs * self.per_pair

    @property
    def done(self) -> bool:
        """True when every pair has its ``per_pair`` answers (and there is at least one pair)."""
        return self.pairs > 0 and self.complete_pairs == self.pairs


def check_annotator(name: object) -> str:
    """The annotator name without surrounding spaces.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: it is empty, longer than 64 characters, or holds control characters.
    """
    if not isinstance(name, str):
        raise TypeError(f"annotator is {type(name).__name__} ({name!r}); expected a name (a string)")
    stripped = name.strip()
    if not 1 <= len(stripped) <= MAX_ANNOTATOR_LENGTH:
        raise ValueError(f"annotator {name!r} is invalid; expected 1 to {MAX_ANNOTATOR_LENGTH} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in stripped):
        raise ValueError(f"annotator {name!r} holds control characters; use letters, digits and spaces")
    return stripped
