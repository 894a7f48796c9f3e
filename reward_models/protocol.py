"""The reward protocol: text in, one float per completion out.

A reward is any callable ``reward(prompts, completions, **kwargs)`` returning a list of floats
or a 1-D tensor with one entry per completion. Function rewards, learned reward models and a
user's own function all meet it, so environments and agents never care which one they hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class RewardModel(Protocol):
    """Anything that scores completions: ``__call__(prompts, completions, **kwargs)``.

    Returns ``list[float]`` or a tensor of shape ``(len(completions),)``. Batched: one call scores
    a whole batch, so learned models can run a single forward pass.
    """

    def __call__(
        self, prompts: list[str], completions: list[str], **kwargs: Any
    ) -> list[float] | torch.Tensor: ...


def reward_name(reward: object) -> str:
    """A readable name for a reward callable, used in error messages."""
    name = getattr(reward, "name", None) or getattr(reward, "__name__", None)
    return str(name) if name else type(reward).__name__


def compute_rewards(
    reward: RewardModel,
    prompts: Sequence[str],
    completions: Sequence[str],
    **kwargs: Any,
) -> torch.Tensor:
    """Call ``reward`` and check what it returned.

    Returns:
        A float32 CPU tensor of shape ``(len(completions),)``.

    Raises:
        ValueError: the reward returned the wrong number of values, or a NaN / infinite value
            (the message names the reward, the offending completion and how to fix it).
        TypeError: the reward returned something that is not a list of numbers or a tensor.
    """
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(completions)} completions; pass one prompt per completion"
        )
    name = reward_name(reward)
    raw = reward(prompts, completions, **kwargs)
    if isinstance(raw, torch.Tensor):
        values = raw.detach().to(device="cpu", dtype=torch.float32).reshape(-1)
    else:
        try:
            values = torch.tensor([float(v) for v in raw], dtype=torch.float32)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"reward {name!r} returned {type(raw).__name__}; expected a list of floats or a 1-D tensor "
                "with one value per completion"
            ) from err
    if values.numel() != len(completions):
        raise ValueError(
            f"reward {name!r} returned {values.numel()} values for {len(completions)} completions; "
            "it must return exactly one score per completion"
        )
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        value = float(values[i])
        kind = "NaN" if math.isnan(value) else "an infinite value"
        raise ValueError(
            f"reward {name!r} returned {kind} ({value}) for completion {i} ({completions[i]!r}); "
            "rewards must be finite: guard divisions and logs in the reward function or clip its output"
        )
    return values
