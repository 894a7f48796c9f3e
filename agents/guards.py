"""Checks on what users pass to an agent, and on the numbers an update produces.

Each check raises a ``ValueError`` / ``TypeError`` that names the argument, the value and the fix,
instead of letting a raw error surface from deep inside torch (or a bad value do nothing silently).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from textrl_env.models import check_device

__all__ = [
    "NonFiniteError",
    "check_device",
    "check_agent_args",
    "check_finite_stats",
    "check_int",
    "check_learn_args",
    "nonfinite_names",
]


class NonFiniteError(FloatingPointError):
    """A loss or gradient norm became NaN or infinite during an update."""


def check_int(
    name: str, value: Any, minimum: int, example: int, maximum: int | None = None, allow_float: bool = False
) -> int:
    """``value`` as an int in ``[minimum, maximum]``; a TypeError for a non-integer, a ValueError outside.

    ``allow_float`` also takes a float with an integral value (``learn(1e5)``, as Stable-Baselines3 does).
    """
    if allow_float and isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int, got {type(value).__name__} {value!r}; pass e.g. {name}={example}"
        )
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}; pass e.g. {name}={example}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}; pass e.g. {name}={example}")
    return int(value)


def check_agent_args(seed: Any, policy_kwargs: Any, verbose: Any) -> int | None:
    """Validate the agent constructor's ``seed`` / ``policy_kwargs`` / ``verbose``; returns the seed as an int."""
    if seed is not None:
        seed = check_int("seed", seed, 0, 0, maximum=2**32 - 2)  # NumPy's range (seed + 1 seeds prompts)
    if policy_kwargs is not None and not isinstance(policy_kwargs, Mapping):
        raise TypeError(
            f"policy_kwargs must be a dict of policy constructor arguments or None, got {policy_kwargs!r}"
        )
    if isinstance(verbose, bool) or not isinstance(verbose, int):
        raise TypeError(f"verbose must be an int (0 silent, 1 a table per log_interval), got {verbose!r}")
    return seed


def check_learn_args(total_timesteps: Any, log_interval: Any) -> tuple[int, int]:
    """Validated ``(total_timesteps, log_interval)`` of :meth:`BaseAlgorithm.learn`."""
    steps = check_int("total_timesteps", total_timesteps, 1, 10_000, allow_float=True)
    interval = check_int("log_interval", log_interval, 1, 1)
    return steps, interval


def nonfinite_names(stats: Mapping[str, Any]) -> list[str]:
    """Names of the scalar statistics in ``stats`` that are NaN or infinite, in ``stats``' order (one host sync)."""
    names = [k for k, v in stats.items() if isinstance(v, torch.Tensor) and v.numel() == 1]
    bad = {k for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)}
    if names:
        values = torch.stack([stats[k].detach().float().reshape(()) for k in names]).cpu()
        bad |= {k for k, ok in zip(names, torch.isfinite(values).tolist(), strict=True) if not ok}
    return [k for k in stats if k in bad]


def check_finite_stats(stats: Mapping[str, Any], iteration: int, algo_name: str) -> None:
    """Raise :class:`NonFiniteError` naming the iteration and the first non-finite statistic."""
    bad = nonfinite_names(stats)
    if bad:
        value = stats[bad[0]]
        raise NonFiniteError(
            f"{algo_name} iteration {iteration}: {bad[0]} is {float(value)} (non-finite: {', '.join(bad)}). "
            "Lower learning_rate, keep max_grad_norm > 0, check the reward for huge values, or pass "
            "on_nonfinite='skip' to drop such gradient steps"
        )


OOM_SETTINGS = {
    "rollout": "the number of env rows (n_envs / num_envs) or max_new_tokens",
    "update": "minibatch_size (episodes per gradient step), or n_envs / max_new_tokens",
}


@contextlib.contextmanager
def out_of_memory_hint(stage: str, algo_name: str, minibatch_size: int | None, n_envs: int) -> Iterator[None]:
    """Re-raise a device out-of-memory error during ``stage`` with the setting to lower named.

    The error stays a ``torch.OutOfMemoryError`` (code that catches it still does); the message
    says which stage ran out and what to change.
    """
    try:
        yield
    except torch.OutOfMemoryError as err:
        size = minibatch_size or n_envs
        hint = OOM_SETTINGS[stage]
        if stage == "update":
            hint = f"minibatch_size (now {size} episodes per gradient step; e.g. minibatch_size={max(size // 2, 1)}), or n_envs / max_new_tokens"
        raise torch.OutOfMemoryError(
            f"{algo_name}: out of device memory during the {stage} ({n_envs} env rows); lower {hint}. "
            f"Original error: {err}"
        ) from err
