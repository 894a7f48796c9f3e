"""Preference pairs on disk: one JSON object per line, ``{"prompt", "chosen", "rejected"}``.

Reading reports every malformed line with its file and 1-based line number, and either refuses the
file (the default) or returns the good rows *and* warns about each bad one -- never a silent skip.
Writing is atomic: the complete new content goes to a temporary file in the same directory, is
flushed to disk, and replaces the original with ``os.replace``, so a crash or Ctrl-C leaves either
the old file or the new one, never a half-written line.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from reward_models.jsonl import read_jsonl_records, record_problem

FIELDS = ("prompt", "chosen", "rejected")


class PreferenceFileWarning(UserWarning):
    """Raised as a warning when ``read_preferences(..., on_error="skip_with_warning")`` skips lines."""


@dataclass(frozen=True)
class PreferencePair:
    """One human (or gold-scorer) judgement: ``chosen`` is the better response to ``prompt``.

    Attributes:
        prompt: the text both responses continue (may be empty).
        chosen: the preferred response (non-empty).
        rejected: the other response (non-empty).
    """

    prompt: str
    chosen: str
    rejected: str

    def __post_init__(self) -> None:
        for key in FIELDS:
            value = getattr(self, key)
            if not isinstance(value, str):
                raise TypeError(f"PreferencePair.{key} is {type(value).__name__} ({value!r}); expected str")
        problem = _problem_with(asdict(self))
        if problem:
            raise ValueError(f"invalid PreferencePair: {problem}")

    def to_json(self) -> str:
        """One JSONL line, without the newline."""
        return json.dumps(asdict(self), ensure_ascii=False)


def _problem_with(record: object) -> str | None:
    """Why ``record`` is not a valid preference pair, or None if it is."""
    return record_problem(record, FIELDS, ("chosen", "rejected"), "a pair needs two non-empty responses")


def read_preferences(
    path: str | os.PathLike[str],
    on_error: Literal["raise", "skip_with_warning"] = "raise",
) -> list[PreferencePair]:
    """Read preference pairs from a JSONL file.

    Blank lines are ignored. Extra keys on a line (e.g. scores, a labeller id) are allowed and
    dropped. A line is malformed if it is not valid UTF-8 or JSON, is not an object, lacks one of
    ``prompt``/``chosen``/``rejected``, has a non-string value, or has an empty ``chosen`` or
    ``rejected``.

    Args:
        path: the JSONL file.
        on_error: ``"raise"`` refuses a file with any malformed line; ``"skip_with_warning"``
            returns the good rows and emits one :class:`PreferenceFileWarning` listing every
            skipped line.

    Returns:
        The pairs, in file order.

    Raises:
        ValueError: malformed lines with ``on_error="raise"`` (every one listed as ``path:line:
            reason``), or an unknown ``on_error``.
        FileNotFoundError: ``path`` does not exist.
    """
    return read_jsonl_records(
        path,
        _problem_with,
        lambda r: PreferencePair(r["prompt"], r["chosen"], r["rejected"]),
        on_error,
        PreferenceFileWarning,
    )


def _check_pairs(pairs: Iterable[PreferencePair]) -> list[PreferencePair]:
    checked = list(pairs)
    for i, pair in enumerate(checked):
        if not isinstance(pair, PreferencePair):
            raise TypeError(
                f"pair {i} is {type(pair).__name__}; expected PreferencePair(prompt=..., chosen=..., rejected=...)"
            )
    return checked


def _atomic_write(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` so that readers only ever see the old or the new file."""
    directory = path.parent
    tmp_name = os.fspath(directory / f".{path.name}.{uuid.uuid4().hex}.tmp")
    # 0o666 through the umask, like an ordinary open(); O_EXCL so we never clobber another file.
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())  # the bytes are on disk before the rename makes them visible
        if path.exists():
            os.chmod(tmp_name, path.stat().st_mode & 0o7777)  # keep the user's permissions
        os.replace(tmp_name, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the temp file behind
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    # The rename itself lives in the directory entry; flush it too where the OS allows.
    # Best effort: some filesystems refuse fsync on a directory, and the file is already in place.
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _encode(pairs: list[PreferencePair]) -> bytes:
    return "".join(pair.to_json() + "\n" for pair in pairs).encode("utf-8")


def write_preferences(path: str | os.PathLike[str], pairs: Iterable[PreferencePair]) -> None:
    """Write ``pairs`` to ``path`` as JSONL, atomically replacing any existing file.

    Raises:
        TypeError: an item is not a :class:`PreferencePair`.
    """
    _atomic_write(Path(path), _encode(_check_pairs(pairs)))


def append_preferences(path: str | os.PathLike[str], pairs: Iterable[PreferencePair]) -> None:
    """Append ``pairs`` to the JSONL file at ``path`` (created if missing), atomically.

    The existing bytes are kept exactly as they are (a missing final newline is added before the
    new lines); if anything fails before the final rename, the original file is untouched.

    Raises:
        TypeError: an item is not a :class:`PreferencePair`.
    """
    target = Path(path)
    new = _check_pairs(pairs)
    old = target.read_bytes() if target.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    _atomic_write(target, old + _encode(new))
