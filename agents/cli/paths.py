"""Paths in a ``--config`` file: resolved against the file's folder, and checked before anything runs.

A config dataclass names its path settings in a ``PATHS`` class variable (a ``ClassVar``, so it is not
a field and makes no flag), each with its kind:

- ``"input"``: a file or directory that must exist (data, prompts, a run directory to read);
- ``"output"``: where results go (it may not exist yet);
- ``"model"``: a model id *or* a directory. ``gpt2`` or ``org/name`` stays an id unless the config's
  folder holds a path of that name; ``./x``, ``../x``, ``~/x`` and absolute paths are paths and
  must exist.

A relative path is joined to the config file's folder, so a config works from any working directory;
``~`` is expanded. Paths typed on the command line are left as they are (relative to the working
directory, as a shell user expects).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PATH_KINDS = ("input", "output", "model")
_EXPLICIT_PREFIXES = ("./", "../", ".\\", "..\\", "~")


def path_kinds(dataclass_types: Iterable[type]) -> dict[str, str]:
    """Field name -> path kind over ``dataclass_types`` (the first to name a field wins, as for flags)."""
    kinds: dict[str, str] = {}
    for dtype in dataclass_types:
        for name, kind in getattr(dtype, "PATHS", {}).items():
            if kind not in PATH_KINDS:  # a programming error in a dataclass, not the user's
                raise ValueError(f"{dtype.__name__}.PATHS[{name!r}] = {kind!r}; expected one of {PATH_KINDS}")
            kinds.setdefault(name, kind)
    return kinds


def _is_explicit_path(text: str) -> bool:
    return text.startswith(_EXPLICIT_PREFIXES) or os.path.isabs(text)


def resolve_path(name: str, value: Any, kind: str, config: str | os.PathLike[str]) -> Any:
    """``value`` of setting ``name`` from ``config``, resolved against the config's folder and checked.

    Raises:
        TypeError: ``value`` is not a plain string or number (a mapping, a list, a boolean).
        FileNotFoundError: an ``"input"`` path, or an explicit ``"model"`` path, that does not exist.
    """
    if value is None:
        return None  # the setting's default
    where = f"--config {os.fspath(config)}"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(
            f"{where}: {name} is a {type(value).__name__} ({value!r}); expected one path, written as a "
            f"string (e.g. `{name}: data/file.jsonl`)"
        )
    text = str(value)
    if not text.strip():
        raise ValueError(f"{where}: {name} is empty; expected a path (or leave the key out for the default)")
    folder = Path(config).parent
    path = Path(text).expanduser()
    resolved = path if path.is_absolute() else folder / path
    if kind == "model" and not _is_explicit_path(text) and not resolved.exists():
        return text  # a model id (gpt2, org/name), or a path transformers will report
    if kind in ("input", "model") and not resolved.exists():
        raise FileNotFoundError(
            f"{where}: {name}: {text!r} resolves to {resolved}, which does not exist. A relative path in a "
            f"config file is relative to the file's folder ({folder}); fix the path or make it absolute"
        )
    return os.fspath(resolved)


def resolve_config_paths(
    values: Mapping[str, Any], kinds: Mapping[str, str], config: str | os.PathLike[str]
) -> dict[str, Any]:
    """``values`` read from ``config`` with each path setting (named in ``kinds``) resolved and checked."""
    return {
        name: resolve_path(name, value, kinds[name], config) if name in kinds else value
        for name, value in values.items()
    }


__all__ = ["PATH_KINDS", "path_kinds", "resolve_config_paths", "resolve_path"]
