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

import contextlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from reward_models.errors import RewardError, RewardTypeError, raised_error, where


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
        RewardError: (a ``ValueError``) the reward raised, returned the wrong number of values, or a
            NaN / infinite value; the message names the reward, the batch index, the prompt and the
            completion. When the reward raised on the batch, each row is scored alone to find the
            first one that fails (``index`` None when none fails alone).
        RewardTypeError: (also a ``TypeError``) it returned something that is not a list of numbers
            or a tensor.
    """
    prompts, completions = list(prompts), list(completions)
    call = resolve_reward(reward)
    values = call_reward(call, prompts, completions, **kwargs)
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        raise _nonfinite_error(call.name, values, int(bad.nonzero()[0, 0]), prompts, completions)
    return values


def call_reward(
    call: ResolvedReward, prompts: list[str], completions: list[str], **kwargs: Any
) -> torch.Tensor:
    """``call``'s values as a float32 CPU tensor ``(B,)``, not yet checked for NaN/inf (see :func:`compute_rewards`)."""
    if len(prompts) != len(completions):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(completions)} completions; pass one prompt per completion"
        )
    name = call.name
    try:
        raw = call(prompts, completions, **kwargs)
    except Exception as err:
        raise raised_error(
            name, err, _first_failing_row(call, prompts, completions, kwargs), prompts, completions
        ) from err
    if isinstance(raw, torch.Tensor):
        values = raw.detach().to(device="cpu", dtype=torch.float32).reshape(-1)
    else:
        try:
            values = torch.tensor([float(v) for v in raw], dtype=torch.float32)
        except (TypeError, ValueError) as err:
            raise RewardTypeError(
                f"reward {name!r} returned {type(raw).__name__} ({_short(raw)}) for a batch of {len(completions)} "
                f"(prompt 0: {prompts[0]!r}); expected a list of floats or a 1-D tensor with one value per completion",
                name,
            ) from err
    if values.numel() != len(completions):
        raise RewardError(
            f"reward {name!r} returned {values.numel()} values for {len(completions)} completions "
            f"(prompt 0: {prompts[0] if prompts else None!r}); it must return exactly one score per completion",
            name,
        )
    return values


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_failing_row(
    call: ResolvedReward, prompts: list[str], completions: list[str], kwargs: dict[str, Any]
) -> int | None:
    """The first row the reward raises on when called on it alone (None if none does, or for one row)."""
    if len(completions) <= 1:
        return 0 if completions else None
    for i in range(len(completions)):
        try:
            call(prompts[i : i + 1], completions[i : i + 1], **kwargs)
        except Exception:  # noqa: BLE001 - whatever it raised, this row is to blame
            return i
    return None


def _nonfinite_error(
    name: str, values: torch.Tensor, i: int, prompts: list[str], completions: list[str]
) -> RewardError:
    value = float(values[i])
    kind = "NaN" if math.isnan(value) else "an infinite value"
    return RewardError(
        f"reward {name!r} returned {kind} ({value}) for completion {i} ({completions[i]!r}) at batch index {i} "
        f"(prompt {prompts[i]!r}); rewards must be finite: guard divisions and logs in the reward function or "
        "clip its output, or build the env with on_reward_error='skip'",
        name,
        i,
        prompts[i],
    )


@dataclass
class SkippedRewards:
    """Scores of a batch where the rows whose reward failed are 0 and marked in ``failed``."""

    values: torch.Tensor  # (B,) float32
    failed: torch.Tensor  # (B,) bool
    errors: list[str]  # one message per failed row


def score_skipping_errors(
    reward: RewardModel | Callable[..., Any],
    prompts: Sequence[str],
    completions: Sequence[str],
    **kwargs: Any,
) -> SkippedRewards:
    """:func:`compute_rewards`, except that rows whose reward fails are dropped (``on_reward_error="skip"``).

    The batch is scored in one call. A NaN / infinite value drops its row only. When the call fails
    as a whole (it raised, or returned the wrong number or type of values), each row is scored alone
    and only the rows that fail by themselves are dropped.
    """
    prompts, completions = list(prompts), list(completions)
    call = resolve_reward(reward)
    n = len(completions)
    try:
        values = call_reward(call, prompts, completions, **kwargs)
    except RewardError:
        values = torch.full((n,), math.nan)
        for i in range(n):
            with contextlib.suppress(RewardError):  # a row that fails stays NaN: dropped below
                values[i] = call_reward(call, prompts[i : i + 1], completions[i : i + 1], **kwargs)[0]
    failed = ~torch.isfinite(values)
    errors = [
        f"reward {call.name!r} failed {where(i, prompts, completions)}"
        for i in failed.nonzero()[:, 0].tolist()
    ]
    return SkippedRewards(torch.where(failed, 0.0, values), failed, errors)
