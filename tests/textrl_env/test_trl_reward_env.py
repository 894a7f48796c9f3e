"""A reward function written for Hugging Face TRL works in the envs unchanged."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest
import torch

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from tests.conftest import build_char_tokenizer, build_tiny_lm

PROMPTS = ["the movie", "i liked"]
CALLS: list[dict[str, Any]] = []


def a_share(completions: list[str], **kwargs: Any) -> list[float]:
    """TRL's convention: completions by keyword, the rest (prompts, ...) in kwargs."""
    CALLS.append({"completions": completions, **kwargs})
    return [c.count("a") / max(len(c), 1) for c in completions]


def settings(**overrides: Any) -> dict[str, Any]:
    tokenizer = build_char_tokenizer()
    return {
        "model": build_tiny_lm(), "tokenizer": tokenizer, "prompts": PROMPTS, "reward_model": a_share,
        "max_new_tokens": 4, "kl_coef": 0.0, **overrides,
    }  # fmt: skip


def test_trl_reward_scores_the_single_env() -> None:
    CALLS.clear()
    env = gym.make("textrl/TextGeneration-v0", **settings())
    assert env.unwrapped.reward_model is a_share  # the env keeps what it was given
    tokenizer = env.unwrapped.tokenizer
    env.reset(seed=0, options={"prompt": "the movie"})
    actions = tokenizer.convert_tokens_to_ids(["a", "b", "a", "a"])
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
    assert truncated and not terminated
    assert (
        info["completion"] == "abaa"
        and info["score"] == pytest.approx(0.75)
        and reward == pytest.approx(0.75)
    )
    assert CALLS == [{"completions": ["abaa"], "prompts": ["the movie"]}]


def test_trl_reward_scores_the_native_vector_env() -> None:
    CALLS.clear()
    envs = gym.make_vec(
        "textrl/TextGeneration-v0", num_envs=2, vectorization_mode="vector_entry_point", **settings()
    )
    envs.reset(seed=0, options={"prompt": PROMPTS})
    a, b = envs.unwrapped.tokenizer.convert_tokens_to_ids(["a", "b"])
    for _ in range(4):
        _, rewards, _, truncated, info = envs.step(torch.tensor([a, b]))
    assert truncated.all()
    assert rewards.tolist() == pytest.approx([1.0, 0.0])
    assert list(info["completion"]) == ["aaaa", "bbbb"]
    assert CALLS == [{"completions": ["aaaa", "bbbb"], "prompts": PROMPTS}]


def test_a_reward_assigned_later_is_resolved_too() -> None:
    env = gym.make("textrl/TextGeneration-v0", **settings(reward_model=lambda p, c: [0.0] * len(c)))
    env.unwrapped.core.reward_model = a_share  # as Preference-v0 does when it normalises its model
    env.reset(seed=0, options={"prompt": "i liked"})
    for action in env.unwrapped.tokenizer.convert_tokens_to_ids(["a", "a", "b", "b"]):
        *_, info = env.step(action)
    assert info["score"] == pytest.approx(0.5)


def test_a_reward_that_fits_neither_convention_fails_at_construction() -> None:
    def needs_answers(completions: list[str], answers: list[str]) -> list[float]:
        return [float(c == a) for c, a in zip(completions, answers, strict=True)]

    with pytest.raises(TypeError, match=r"reward 'needs_answers' with signature .*answers"):
        gym.make("textrl/TextGeneration-v0", **settings(reward_model=needs_answers))
