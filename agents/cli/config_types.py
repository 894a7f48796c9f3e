"""Values of a ``--config`` file checked against their fields' types, so YAML's guesses give clear errors.

YAML and TOML type each value themselves: ``batch_size: null``, ``batch_size: [8]`` or
``token: 12345678`` reach the config dataclass as None, a list or an int, and its own checks then fail
with Python's words (``'>' not supported between instances of 'NoneType' and 'int'``). Here each value
is held against the field's annotation first: a number where text is expected becomes text (YAML read
it as a number), anything else that does not fit is refused, naming the key, the file and the type.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Any

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def field_types(dataclass_types: Iterable[type]) -> dict[str, Any]:
    """Field name -> its resolved annotation over ``dataclass_types`` (the first to name a field wins)."""
    hints: dict[str, Any] = {}
    for dtype in dataclass_types:
        for name, hint in typing.get_type_hints(dtype).items():
            hints.setdefault(name, hint)
    return hints


def _split_optional(hint: Any) -> tuple[tuple[Any, ...], bool]:
    """``(the non-None members of hint, whether None is allowed)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        return tuple(m for m in members if m is not type(None)), type(None) in members
    return (hint,), hint is type(None) or hint is Any


def check_config_value(name: str, value: Any, hint: Any, where: str) -> Any:
    """``value`` of setting ``name`` if it fits ``hint`` (numbers made text for a text field).

    Raises:
        ValueError: ``value`` does not fit the field's type (None for a setting that needs a value,
            a list or mapping for a number, ...).
    """
    members, optional = _split_optional(hint)
    if value is None:
        if optional:
            return None
        raise ValueError(
            f"{where}: {name} is null (empty); expected {_describe(members)}; leave the key out for its default"
        )
    plain = [m for m in members if m in _TYPE_NAMES]
    if not plain or len(plain) != len(members):
        return value  # a Literal, a list type or a class: its own validation decides
    if isinstance(value, bool):
        fits = bool in plain
    elif isinstance(value, int):
        fits = int in plain or float in plain
    elif isinstance(value, float):
        fits = float in plain
    else:
        fits = isinstance(value, str) and str in plain
    if fits:
        return value
    if str in plain and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # `token: 12345678`, `device: 0`: YAML read text as a number
    raise ValueError(f"{where}: {name} is {type(value).__name__} ({value!r}); expected {_describe(members)}")


def _describe(members: tuple[Any, ...]) -> str:
    return " or ".join(_TYPE_NAMES.get(m, getattr(m, "__name__", str(m))) for m in members)


__all__ = ["check_config_value", "field_types"]
