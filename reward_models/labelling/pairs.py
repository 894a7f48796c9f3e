"""Pairs to label: ``PAIRS.jsonl`` lines ``{"id"?, "prompt", "a", "b"}``, read with file:line errors.

A line without an ``id`` gets one from its content (a SHA-256 prefix of prompt, a and b), so
importing the same file twice, or the same pair from two files, names the same pair.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from reward_models.jsonl import read_jsonl_records, record_problem

FIELDS = ("prompt", "a", "b")
MAX_ID_LENGTH = 200


class PairsFileWarning(UserWarning):
    """Warned when ``read_label_pairs(..., on_error="skip_with_warning")`` skips malformed lines."""


def content_id(prompt: str, a: str, b: str) -> str:
    """A stable id for a pair that has none: the first 16 hex digits of SHA-256 over its texts."""
    blob = json.dumps([prompt, a, b], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class LabelPair:
    """One prompt and two responses to compare.

    Attributes:
        id: unique name of the pair (a string of 1-200 characters).
        prompt: the text both responses continue (may be empty).
        a: the first response (non-empty).
        b: the second response (non-empty).
    """

    id: str
    prompt: str
    a: str
    b: str

    def __post_init__(self) -> None:
        for key in ("id", *FIELDS):
            value = getattr(self, key)
            if not isinstance(value, str):
                raise TypeError(f"LabelPair.{key} is {type(value).__name__} ({value!r}); expected str")
        problem = _id_problem(self.id) or record_problem(
            {"prompt": self.prompt, "a": self.a, "b": self.b}, FIELDS, ("a", "b"), _WHY_NON_EMPTY
        )
        if problem:
            raise ValueError(f"invalid LabelPair: {problem}")

    @classmethod
    def from_texts(cls, prompt: str, a: str, b: str, id: str | None = None) -> LabelPair:
        """A pair named ``id``, or by its content when ``id`` is None."""
        return cls(content_id(prompt, a, b) if id is None else id, prompt, a, b)


_WHY_NON_EMPTY = "a pair needs two non-empty responses to compare"


def _id_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"'id' is {type(value).__name__} ({value!r}), expected a string or an integer"
    if not value.strip() or len(value) > MAX_ID_LENGTH:
        return f"'id' {value!r} is invalid; expected 1 to {MAX_ID_LENGTH} characters, not only spaces"
    return None


def _problem_with(record: object) -> str | None:
    """Why ``record`` is not a pair to label, or None if it is."""
    problem = record_problem(record, FIELDS, ("a", "b"), _WHY_NON_EMPTY)
    if problem or not isinstance(record, dict) or "id" not in record:
        return problem
    raw = record["id"]
    return _id_problem(str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw)


def _build(record: dict) -> LabelPair:
    raw = record.get("id")
    return LabelPair.from_texts(record["prompt"], record["a"], record["b"], None if raw is None else str(raw))


def unique_pairs(pairs: Iterable[LabelPair], source: str = "pairs") -> list[LabelPair]:
    """``pairs`` with exact repeats dropped (first kept), in order.

    Raises:
        ValueError: two different pairs share an id.
    """
    seen: dict[str, LabelPair] = {}
    for pair in pairs:
        earlier = seen.setdefault(pair.id, pair)
        if earlier != pair:
            raise ValueError(
                f"{source}: id {pair.id!r} names two different pairs (prompts {earlier.prompt[:40]!r} and "
                f"{pair.prompt[:40]!r}); give each pair its own id, or drop the id to name pairs by content"
            )
    return list(seen.values())


def read_label_pairs(path: str | os.PathLike[str], on_error: str = "raise") -> list[LabelPair]:
    """Read the pairs to label from a JSONL file.

    Each non-blank line is an object with string ``prompt``, ``a`` and ``b`` (``a`` and ``b``
    non-empty) and an optional ``id`` (string or integer; default: derived from the content).
    Extra keys are ignored. Lines repeating an earlier pair exactly are dropped.

    Args:
        path: the JSONL file.
        on_error: ``"raise"`` refuses a file with any malformed line; ``"skip_with_warning"`` keeps
            the good lines and warns once, listing the rest.

    Returns:
        The pairs, in file order.

    Raises:
        ValueError: malformed lines (each reported as ``path:line: reason``), or one id naming two
            different pairs.
        FileNotFoundError: ``path`` does not exist.
    """
    pairs = read_jsonl_records(path, _problem_with, _build, on_error, PairsFileWarning)  # type: ignore[arg-type]
    return unique_pairs(pairs, os.fspath(path))
