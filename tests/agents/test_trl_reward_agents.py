"""Every agent trains on a reward function written for Hugging Face TRL, passed in unchanged."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from agents import GRPO, PPO, REINFORCE, RLOO
from agents.base import BaseAlgorithm
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv

PROMPTS = ["the movie", "i liked", "bb"]


class TRLReward:
    """``def reward(completions, **kwargs)``, TRL's convention, recording what each call received."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, completions: list[str], **kwargs: Any) -> list[float]:
        self.calls.append({"completions": list(completions), **kwargs})
        return [char_score(c) for c in completions]


def char_score(completion: str) -> float:
    """The mean character code, scaled: it differs between almost any two completions, so an update
    sees advantages that are not all zero whatever was sampled (a rare-letter count may not)."""
    return sum(map(ord, completion)) / (128 * max(len(completion), 1))


CASES: dict[str, tuple[type[BaseAlgorithm], str, dict[str, Any]]] = {
    "REINFORCE": (REINFORCE, "LMPolicy", {}),
    "RLOO": (RLOO, "LMPolicy", {"k": 2}),
    "PPO": (PPO, "LMActorCriticPolicy", {"minibatch_size": 2}),
    "GRPO": (GRPO, "LMPolicy", {"num_generations": 2, "beta": 0.05}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_agent_learns_from_a_trl_reward_function(name: str) -> None:
    algo, policy, settings = CASES[name]
    reward = TRLReward()
    envs = TextGenerationVectorEnv(
        build_tiny_lm(), build_char_tokenizer(), PROMPTS, reward, num_envs=4, max_new_tokens=4
    )
    agent = algo(policy, envs, seed=0, learning_rate=1e-2, verbose=0, **settings)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(total_timesteps=32)
    assert reward.calls, "the reward was never called"
    for call in reward.calls:  # called by keyword, with one prompt per completion
        assert set(call) == {"completions", "prompts"}
        assert len(call["prompts"]) == len(call["completions"]) and set(call["prompts"]) <= set(PROMPTS)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters(), strict=True))
    # The agent's own scores are the function's values for the completions it produced.
    evaluation = agent.evaluate(PROMPTS, n_samples=2, seed=1)
    expected = [char_score(c) for c in evaluation.completions]
    torch.testing.assert_close(evaluation.scores, torch.tensor(expected))
