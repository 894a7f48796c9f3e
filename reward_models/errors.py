"""The errors of a faulty reward, each naming the reward, the batch index and the prompt.

A user's reward function can raise, return NaN or infinity, return too few or too many values or
something that is not numbers at all. :func:`reward_models.protocol.compute_rewards` raises a
:class:`RewardError` for each; :func:`reward_models.protocol.score_skipping_errors` (what an env
with ``on_reward_error="skip"`` calls) marks the failed rows instead.
"""

from __future__ import annotations

from typing import Any

ON_REWARD_ERROR: tuple[str, ...] = ("raise", "skip")


class RewardError(ValueError):
    """A reward failed on a batch; ``index`` (or None when no single row is to blame) and ``prompt`` say where."""

    def __init__(
        self, message: str, reward: str, index: int | None = None, prompt: str | None = None
    ) -> None:
        super().__init__(message)
        self.reward, self.index, self.prompt = reward, index, prompt


class RewardTypeError(RewardError, TypeError):
    """The reward returned something that is not a list of numbers or a 1-D tensor."""


def check_on_reward_error(value: Any) -> str:
    """``value`` if it is ``"raise"`` or ``"skip"``; else a ValueError naming the setting."""
    if not isinstance(value, str) or value not in ON_REWARD_ERROR:
        raise ValueError(
            f"on_reward_error must be 'raise' (stop with the reward, batch index and prompt named) or 'skip' "
            f"(drop the episode and count it in info['reward_error']), got {value!r}"
        )
    return value


def where(index: int, prompts: list[str], completions: list[str]) -> str:
    """``at batch index i (prompt ..., completion ...)`` for a message."""
    return f"at batch index {index} (prompt {prompts[index]!r}, completion {completions[index]!r})"


def raised_error(
    name: str, err: Exception, index: int | None, prompts: list[str], completions: list[str]
) -> RewardError:
    """The RewardError for a reward that raised ``err`` (``index``: the first row that fails alone, if any)."""
    place = where(index, prompts, completions) if index is not None else f"on a batch of {len(completions)}"
    return RewardError(
        f"reward {name!r} raised {type(err).__name__}: {err} {place}; fix the reward function, or build the env "
        "with on_reward_error='skip' to drop such episodes (they are counted in info['reward_error'])",
        name,
        index,
        prompts[index] if index is not None else None,
    )
