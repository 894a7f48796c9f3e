"""Random-number-generator states in a form checkpoints can hold (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


class RNGStateError(ValueError):
    """A saved RNG state that does not hold what is asked of it."""


def get_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) global RNG states, plus named ``torch.Generator`` states.

    Everything is a tensor, list, int, float, str or None, so it loads with ``weights_only=True``.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "generators": {key: gen.get_state() for key, gen in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`get_rng_state` captured (and the named generators that are passed)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (np_state["name"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
    saved = state.get("generators", {})
    for key, gen in (generators or {}).items():
        if key not in saved:
            raise RNGStateError(f"no saved state for generator {key!r}; the checkpoint has {sorted(saved)}")
        gen.set_state(saved[key])
