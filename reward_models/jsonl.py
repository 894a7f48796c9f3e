"""Reading JSONL files of string records, with every malformed line reported by file and line.

Preference pairs (``prompt``/``chosen``/``rejected``) and SFT demonstrations
(``prompt``/``response``) share this reader: a malformed line is never skipped silently; the file
is refused with every bad line listed, or the good rows come back with one warning listing the rest.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

T = TypeVar("T")
OnError = Literal["raise", "skip_with_warning"]


def record_problem(
    record: object, fields: Sequence[str], non_empty: Sequence[str], why_non_empty: str
) -> str | None:
    """Why ``record`` is not an object of string ``fields`` with ``non_empty`` ones filled, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object with keys {list(fields)}, got {type(record).__name__}"
    missing = [key for key in fields if key not in record]
    if missing:
        return f"missing key(s) {missing}; each line needs {list(fields)}"
    for key in fields:
        if not isinstance(record[key], str):
            return f"{key!r} is {type(record[key]).__name__} ({record[key]!r}), expected a string"
    for key in non_empty:
        if not record[key].strip():
            return f"{key!r} is empty; {why_non_empty}"
    return None


def read_jsonl_records(
    path: str | os.PathLike[str],
    check: Callable[[object], str | None],
    build: Callable[[dict], T],
    on_error: OnError,
    warning: type[Warning],
) -> list[T]:
    """Parse each non-blank line, ``check`` it (a reason or None), and ``build`` the good ones.

    Raises:
        ValueError: malformed lines with ``on_error="raise"`` (each as ``path:line: reason``), or an
            unknown ``on_error``.
        FileNotFoundError: ``path`` does not exist.
    """
    if on_error not in ("raise", "skip_with_warning"):
        raise ValueError(f"on_error={on_error!r} is invalid; expected 'raise' or 'skip_with_warning'")
    rows: list[T] = []
    bad: list[str] = []
    with open(path, "rb") as f:  # bytes, so a bad encoding is reported per line, not for the file
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                problem: str | None = f"not valid UTF-8 ({err.reason} at byte {err.start})"
            except json.JSONDecodeError as err:
                problem = f"invalid JSON ({err.msg} at column {err.colno})"
            else:
                problem = check(record)
            if problem:
                bad.append(f"{os.fspath(path)}:{number}: {problem}")
            else:
                rows.append(build(record))
    if bad:
        listing = "\n  ".join(bad)
        if on_error == "raise":
            raise ValueError(
                f"{len(bad)} malformed line(s) in {os.fspath(path)}:\n  {listing}\n"
                "fix or delete them, or pass on_error='skip_with_warning' to use the valid lines"
            )
        warnings.warn(
            f"skipped {len(bad)} malformed line(s) of {os.fspath(path)} (kept {len(rows)}):\n  {listing}",
            warning,
            stacklevel=3,
        )
    return rows
