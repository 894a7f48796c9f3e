"""Argument checks shared across the package, each raising with the name, the value and what was expected."""

from __future__ import annotations

import math
from typing import Any


def check_positive_ints(**values: Any) -> None:
    """Raise ``ValueError`` naming the first argument that is not a positive int (bools are refused)."""
    for label, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label}={value!r} is invalid; expected a positive int")


def positive_finite(name: str, value: float, allow_zero: bool = False) -> float:
    """``float(value)`` if it is finite and > 0 (>= 0 with ``allow_zero``); else TypeError / ValueError."""
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number; got {value!r} of type {type(value).__name__}") from err
    if not (math.isfinite(number) and (number > 0 or (allow_zero and number == 0))):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number {bound}")
    return number
