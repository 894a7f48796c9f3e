"""A faulty reward: a clear error naming it, the batch index and the prompt; or, asked, the episode dropped."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import REINFORCE
from agents.rewards import drop_failed_episodes
from reward_models import RewardError, RewardTypeError, compute_rewards, score_skipping_errors
from tests.agents.test_ppo import PROMPTS, capture_gradients, make_episodes
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv

P, C = ["good", "bad", "fine"], ["x", "y", "z"]


def fails_on_bad(prompts: list[str], completions: list[str]) -> list[float]:
    return [1.0 / (p != "bad") for p in prompts]  # ZeroDivisionError on the prompt "bad"


def nan_on_bad(prompts: list[str], completions: list[str]) -> list[float]:
    return [math.nan if p == "bad" else 1.0 for p in prompts]


def inf_on_bad(prompts: list[str], completions: list[str]) -> list[float]:
    return [math.inf if p == "bad" else 1.0 for p in prompts]


def one_value_short(prompts: list[str], completions: list[str]) -> list[float]:
    return [1.0] * (len(completions) - 1)


def returns_text(prompts: list[str], completions: list[str]) -> str:
    return "1.0"


def returns_dict(prompts: list[str], completions: list[str]) -> dict[str, float]:
    return {"a": 1.0}


# --------------------------------------------------------------------------- messages


def test_a_reward_that_raises_names_itself_the_batch_index_and_the_prompt() -> None:
    with pytest.raises(
        RewardError,
        match=r"reward 'fails_on_bad' raised ZeroDivisionError: .* at batch index 1 \(prompt 'bad', completion 'y'\)",
    ) as caught:
        compute_rewards(fails_on_bad, P, C)
    assert (caught.value.reward, caught.value.index, caught.value.prompt) == ("fails_on_bad", 1, "bad")
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize(("reward", "kind"), [(nan_on_bad, "NaN"), (inf_on_bad, "an infinite value")])
def test_a_non_finite_reward_names_the_batch_index_and_the_prompt(reward: Any, kind: str) -> None:
    with pytest.raises(
        RewardError, match=rf"reward '{reward.__name__}' returned {kind}.*batch index 1 \(prompt 'bad'\)"
    ):
        compute_rewards(reward, P, C)


def test_the_wrong_number_of_values_names_the_reward_and_a_prompt() -> None:
    with pytest.raises(
        RewardError, match=r"'one_value_short' returned 2 values for 3 completions \(prompt 0: 'good'\)"
    ):
        compute_rewards(one_value_short, P, C)


@pytest.mark.parametrize("reward", [returns_text, returns_dict])
def test_the_wrong_type_is_a_type_error_naming_the_reward_and_a_prompt(reward: Any) -> None:
    with pytest.raises(RewardTypeError, match=rf"reward '{reward.__name__}' returned .*prompt 0: 'good'"):
        compute_rewards(reward, P, C)
    with pytest.raises(TypeError):  # still a TypeError for code that caught the old one
        compute_rewards(reward, P, C)


# --------------------------------------------------------------------------- skipping


@pytest.mark.parametrize("reward", [fails_on_bad, nan_on_bad, inf_on_bad])
def test_skipping_drops_only_the_row_that_fails(reward: Any) -> None:
    result = score_skipping_errors(reward, P, C)
    assert result.failed.tolist() == [False, True, False]
    assert result.values.tolist() == [1.0, 0.0, 1.0]
    assert len(result.errors) == 1 and "batch index 1 (prompt 'bad'" in result.errors[0]


@pytest.mark.parametrize("reward", [one_value_short, returns_text])
def test_skipping_a_batch_that_fails_as_a_whole_rescores_each_row(reward: Any) -> None:
    result = score_skipping_errors(reward, P, C)
    assert result.failed.all()  # each row alone fails too (0 values; a string)


def make_vector_env(reward: Any, on_reward_error: str = "skip", num_envs: int = 4) -> TextGenerationVectorEnv:
    tokenizer = build_char_tokenizer()
    return TextGenerationVectorEnv(
        build_tiny_lm(vocab_size=len(tokenizer)), tokenizer, prompts=PROMPTS, reward_model=reward,
        num_envs=num_envs, max_new_tokens=3, on_reward_error=on_reward_error,
    )  # fmt: skip


def fails_on_abc(prompts: list[str], completions: list[str]) -> list[float]:
    if "abc" in prompts:
        raise RuntimeError("the grader is down for 'abc'")
    return [float(len(c)) for c in completions]


def test_the_env_raises_by_default_with_the_prompt_named() -> None:
    env = make_vector_env(fails_on_abc, on_reward_error="raise")
    env.reset(options={"prompt": ["hello", "abc", "xyz", "abc"]})
    with pytest.raises(
        RewardError, match=r"'fails_on_abc' raised RuntimeError.*batch index 1 \(prompt 'abc'"
    ):
        for _ in range(4):
            env.step(torch.full((4,), 5))


def test_the_vector_env_skips_the_failing_rows_and_counts_them() -> None:
    env = make_vector_env(fails_on_abc)
    env.reset(options={"prompt": ["hello", "abc", "xyz", "abc"]})
    for _ in range(3):  # no EOS: every row ends at max_new_tokens=3
        _, rewards, _, truncated, info = env.step(torch.full((4,), 5))
    assert truncated.all()
    assert info["reward_error"].tolist() == [False, True, False, True] and info["_reward_error"].all()
    assert rewards[1] == 0 and rewards[3] == 0 and info["score"][1] == 0
    assert env.reward_errors == 2


def test_on_reward_error_passes_through_gym_make_and_counts_in_the_single_env() -> None:
    tokenizer = build_char_tokenizer()
    env = gym.make(
        "textrl/TextGeneration-v0", model=build_tiny_lm(vocab_size=len(tokenizer)), tokenizer=tokenizer,
        prompts=["abc"], reward_model=fails_on_abc, max_new_tokens=2, on_reward_error="skip",
    )  # fmt: skip
    env.reset(seed=0)
    env.step(5)
    _, reward, _, truncated, info = env.step(5)
    assert truncated and reward == 0.0 and info["reward_error"] is True
    assert env.unwrapped.reward_errors == 1


def test_a_bad_on_reward_error_is_refused() -> None:
    with pytest.raises(ValueError, match=r"on_reward_error must be 'raise' .* or 'skip' .* got 'ignore'"):
        make_vector_env(fails_on_abc, on_reward_error="ignore")


# --------------------------------------------------------------------------- what an agent does with a dropped episode


def test_a_dropped_episode_has_zero_weight_in_the_update() -> None:
    """REINFORCE's gradient on a batch with one dropped episode equals its gradient on the kept ones alone."""
    env = make_vector_env(fails_on_abc, num_envs=4, on_reward_error="raise")
    agent = REINFORCE("LMPolicy", env, seed=0, verbose=0, baseline="none")
    full = make_episodes(
        env,
        [3, 2, 3, 1],
        [1.0, 5.0, 0.25, 0.75],
        torch.rand(4, 3, generator=torch.Generator().manual_seed(0)),
    )
    full = dataclasses.replace(full, dropped=torch.tensor([False, True, False, False]))
    kept_rows = torch.tensor([0, 2, 3])
    kept = dataclasses.replace(
        full,
        prompts=[full.prompts[i] for i in kept_rows], completions=[""] * 3,
        **{f: getattr(full, f)[kept_rows] for f in ("prompt_ids", "prompt_mask", "response_ids", "response_mask",
                                                    "logprobs", "ref_logprobs", "kl", "scores")},
        dropped=None,
    )  # fmt: skip
    grads = []
    for episodes in (drop_failed_episodes(full), kept):
        captured = capture_gradients(agent)
        agent.policy.train()
        agent._update(episodes, agent._sequence_rewards(episodes))
        grads.append(captured)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)
    rewards = agent._sequence_rewards(drop_failed_episodes(full))
    assert float(rewards.total[1]) == pytest.approx(float(rewards.total[[0, 2, 3]].mean()))


def test_an_agent_trains_through_reward_errors_and_logs_them(tmp_path: Path) -> None:
    env = make_vector_env(fails_on_abc, num_envs=4)
    agent = REINFORCE("LMPolicy", env, seed=0, verbose=0, tensorboard_log=tmp_path, learning_rate=1e-3)
    agent.learn(total_timesteps=4 * 3 * 4)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    errors = [float(r["rollout/reward_errors"]) for r in rows if r.get("rollout/reward_errors")]
    assert sum(errors) == env.reward_errors > 0
    assert all(np.isfinite(float(r["rollout/score_mean"])) for r in rows if r.get("rollout/score_mean"))
