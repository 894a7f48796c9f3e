"""Argument checks shared across the package, each raising with the name, the value and what was expected."""

from __future__ import annotations

import math
import numbers
from typing import Any


def _real(name: str, value: Any) -> float:
    """A real number (a 0-d tensor or NumPy scalar too) as a float; bools and the rest are a TypeError."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r} of type {type(value).__name__}")
    return float(value)


def check_positive_ints(**values: Any) -> None:
    """Raise ``ValueError`` naming the first argument that is not a positive int (bools are refused)."""
    for label, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label}={value!r} is invalid; expected a positive int")


def finite_number(name: str, value: Any) -> float:
    """``float(value)`` for a finite real number (bools refused); else TypeError / ValueError naming ``name``."""
    value = _real(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number")
    return value


def positive_finite(name: str, value: float, allow_zero: bool = False) -> float:
    """``float(value)`` if it is finite and > 0 (>= 0 with ``allow_zero``); else TypeError / ValueError."""
    value = _real(name, value)
    number = value
    if not (math.isfinite(number) and (number > 0 or (allow_zero and number == 0))):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number {bound}")
    return number
