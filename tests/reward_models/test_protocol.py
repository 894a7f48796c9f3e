"""Both calling conventions of a reward: textrl's positional one and Hugging Face TRL's keywords."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from reward_models import ResolvedReward, WeightedSumReward, compute_rewards, resolve_reward
from reward_models.functions import LengthReward, SentimentReward

PROMPTS = ["the film", "a story"]
COMPLETIONS = ["was great", "dull"]


def trl_length(completions: list[str], **kwargs: Any) -> list[float]:
    """A reward function exactly as TRL documents them."""
    return [float(len(c)) for c in completions]


class Unreadable:
    """A callable whose signature inspect cannot read (as some C extensions)."""

    __signature__ = "not a signature"

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [0.5] * len(completions)


def test_the_convention_is_read_from_the_signature() -> None:
    def textrl_style(p: list[str], c: list[str]) -> list[float]:
        return [0.0] * len(c)

    def trl_with_prompts(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        return [0.0] * len(completions)

    def keyword_only(*, completions: list[str], prompts: list[str]) -> list[float]:
        return [0.0] * len(completions)

    assert resolve_reward(textrl_style).convention == "textrl"
    assert resolve_reward(trl_length).convention == "trl"
    assert resolve_reward(trl_with_prompts).convention == "trl"
    assert resolve_reward(keyword_only).convention == "trl"
    assert resolve_reward(functools.partial(trl_length)).convention == "trl"
    assert resolve_reward(Unreadable()).convention == "textrl"  # no readable signature: positional
    resolved = resolve_reward(trl_length)
    assert resolve_reward(resolved) is resolved and resolved.func is trl_length
    assert resolved.name == "trl_length" and isinstance(resolved, ResolvedReward)


def test_trl_style_rewards_get_prompts_and_completions_by_keyword() -> None:
    seen: dict[str, Any] = {}

    def spy(completions: list[str], **kwargs: Any) -> list[float]:
        seen.update(kwargs, completions=completions)
        return [1.0] * len(completions)

    def swapped(completions: list[str], prompts: list[str]) -> list[float]:
        return [float(len(c)) for c in completions]  # a positional call would measure the prompts

    assert compute_rewards(trl_length, PROMPTS, COMPLETIONS).tolist() == [9.0, 4.0]
    assert compute_rewards(swapped, PROMPTS, COMPLETIONS).tolist() == [9.0, 4.0]
    compute_rewards(spy, PROMPTS, COMPLETIONS, answer="x")
    assert seen == {"prompts": PROMPTS, "completions": COMPLETIONS, "answer": "x"}


def test_textrl_rewards_behave_as_before() -> None:
    assert compute_rewards(LengthReward(4), PROMPTS, COMPLETIONS).tolist() == pytest.approx(
        LengthReward(4)(PROMPTS, COMPLETIONS)
    )
    assert compute_rewards(lambda p, c: [1.0, 2.0], PROMPTS, COMPLETIONS).tolist() == [1.0, 2.0]
    assert compute_rewards(Unreadable(), PROMPTS, COMPLETIONS).tolist() == [0.5, 0.5]


def test_weighted_sum_mixes_the_conventions() -> None:
    total = WeightedSumReward([(trl_length, 1.0), (SentimentReward(), 0.0)])
    assert total(PROMPTS, COMPLETIONS).tolist() == [9.0, 4.0]


def test_a_callable_that_fits_neither_convention_is_a_clear_error() -> None:
    def needs_a_dataset_column(completions: list[str], solution: list[str], **kwargs: Any) -> list[float]:
        return [0.0] * len(completions)

    def one_argument(texts: list[str]) -> list[float]:
        return [0.0] * len(texts)

    with pytest.raises(
        TypeError, match=r"'needs_a_dataset_column'.*solution.*reward\(prompts=\.\.\., completions"
    ):
        resolve_reward(needs_a_dataset_column)
    with pytest.raises(TypeError, match=r"'one_argument' with signature \(texts.*fits neither convention"):
        compute_rewards(one_argument, PROMPTS, COMPLETIONS)
    with pytest.raises(TypeError, match="a reward must be callable"):
        resolve_reward("sentiment")
