"""The reward protocol: text in, one float per completion out.

A reward is a callable returning a list of floats or a 1-D tensor with one entry per completion,
in either of two calling conventions:

- textrl's: ``reward(prompts, completions, **kwargs)``, positional (function rewards, learned
  reward models and :class:`RewardModel` implementations);
- Hugging Face TRL's, unchanged: ``reward(prompts=..., completions=..., **kwargs)`` by keyword,
  e.g. ``def reward(completions, **kwargs)``. textrl passes ``prompts`` and ``completions`` (plain
  strings) and whatever keywords the caller of :func:`compute_rewards` gave; not TRL's
  ``completion_ids``, ``trainer_state`` or dataset columns.

:func:`resolve_reward` decides the convention once, from the signature, when a reward is given
(the env does it at construction), so environments and agents never care which one they hold.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

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


Convention = Literal["textrl", "trl"]


class ResolvedReward:
    """A reward callable with its calling convention decided, callable the textrl way.

    Made by :func:`resolve_reward`; ``func`` is the callable the user gave.
    """

    def __init__(self, func: Callable[..., Any], convention: Convention) -> None:
        self.func = func
        self.convention: Convention = convention
        self.name = reward_name(func)

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> Any:
        if self.convention == "trl":
            return self.func(prompts=prompts, completions=completions, **kwargs)
        return self.func(prompts, completions, **kwargs)

    def __repr__(self) -> str:
        return f"ResolvedReward({self.name!r}, convention={self.convention!r})"


def _convention_error(reward: object, signature: inspect.Signature, why: str) -> TypeError:
    return TypeError(
        f"reward {reward_name(reward)!r} with signature {signature} {why}. A reward is called either "
        "as reward(prompts, completions, **kwargs) (textrl) or as reward(prompts=..., completions=..., "
        "**kwargs) (Hugging Face TRL, e.g. def reward(completions, **kwargs)); textrl passes only prompts "
        "and completions, so give other parameters defaults"
    )


def resolve_reward(reward: object) -> ResolvedReward:
    """Decide once how to call ``reward``: textrl's positional or TRL's keyword convention.

    A callable with a parameter named ``completions`` that can be passed by keyword is called as
    TRL calls reward functions, ``reward(prompts=..., completions=..., **kwargs)``; any other one as
    ``reward(prompts, completions, **kwargs)``. Callables without a readable signature (some
    builtins and C extensions) are called positionally. A :class:`ResolvedReward` passes through.

    Raises:
        TypeError: ``reward`` is not callable, or its signature fits neither convention (the
            message shows the signature and both conventions).
    """
    if isinstance(reward, ResolvedReward):
        return reward
    if not callable(reward):
        raise TypeError(
            f"a reward must be callable as reward(prompts, completions) or reward(prompts=..., "
            f"completions=...) and return one float per completion, got {type(reward).__name__}"
        )
    try:
        signature = inspect.signature(reward)
    except (TypeError, ValueError):
        return ResolvedReward(reward, "textrl")
    completions = signature.parameters.get("completions")
    if completions is not None and completions.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    ):
        try:
            signature.bind(prompts=[], completions=[])
        except TypeError as err:
            raise _convention_error(
                reward, signature, f"takes completions= but cannot be called by keyword ({err})"
            ) from err
        return ResolvedReward(reward, "trl")
    try:
        signature.bind([], [])
    except TypeError as err:
        raise _convention_error(reward, signature, f"fits neither convention ({err})") from err
    return ResolvedReward(reward, "textrl")


def compute_rewards(
    reward: RewardModel | Callable[..., Any],
    prompts: Sequence[str],
    completions: Sequence[str],
    **kwargs: Any,
) -> torch.Tensor:
    """Call ``reward`` (either convention, see :func:`resolve_reward`) and check what it returned.

    Pass a :class:`ResolvedReward` to decide the convention once for many calls, as the env does.

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
    call = resolve_reward(reward)
    name = call.name
    raw = call(prompts, completions, **kwargs)
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
