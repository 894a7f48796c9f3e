"""Learning tests on the built-in tasks with the embedded default model: the agents must actually learn.

Each test trains from the shipped model for a fixed, seeded budget on CPU (well under three minutes,
usually under a minute) and compares the policy before and after on prompts it never trained on:

- ``textrl/Sentiment-v0``: REINFORCE, RLOO, PPO and GRPO each raise the mean VADER score of sampled
  completions of the held-out review openers by at least 0.3, while the mean KL to the reference
  (summed over the response) stays finite; both numbers are printed (``pytest -s`` shows them).
- ``textrl/Arithmetic-v0``: RLOO raises the exact-match accuracy of sampled answers to its questions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import pytest

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from agents.base import BaseAlgorithm, Evaluation
from agents.grpo import GRPO
from agents.ppo import PPO
from agents.reinforce import REINFORCE
from agents.rloo import RLOO
from textrl_env.default_model import HELDOUT_SENTIMENT_PROMPTS

EVAL_SAMPLES = 8  # completions per held-out prompt: 16 x 8 = 128, a standard error of ~0.04 on the mean
EVAL_SEED = 1234  # the evaluation sampler's own seed, the same before and after training


@dataclass
class Case:
    """One algorithm's learning run on Sentiment-v0."""

    algo: type[BaseAlgorithm]
    policy: str
    settings: dict[str, Any] = field(default_factory=dict)
    num_envs: int = 32
    kl_coef: float = 0.05  # the task's default
    total_timesteps: int = 24_000


SENTIMENT_CASES = {
    "REINFORCE": Case(REINFORCE, "LMPolicy", {"learning_rate": 1e-3, "baseline": "moving_average"}),
    "RLOO": Case(RLOO, "LMPolicy", {"learning_rate": 1e-3, "k": 4}),
    "PPO": Case(PPO, "LMActorCriticPolicy", {"learning_rate": 3e-4, "minibatch_size": 16}),
    # TRL's defaults otherwise: loss_type="dapo", scale_rewards="group"; beta=0 keeps the task's KL in the reward.
    "GRPO": Case(GRPO, "LMPolicy", {"learning_rate": 1e-3, "num_generations": 4}),
    # The KL as GRPO's k3 loss term instead (the reward is then the score alone), per-sequence mean.
    # The env's kl_coef (0.05) is then overridden to 0 for the reward.
    "GRPO-beta": Case(
        GRPO, "LMPolicy", {"learning_rate": 1e-3, "num_generations": 4, "beta": 0.05, "loss_type": "grpo"}
    ),
}


def evaluate_heldout(agent: BaseAlgorithm) -> Evaluation:
    """Sampled completions of every held-out opener, with the env's VADER score and summed KL of each."""
    return agent.evaluate(list(HELDOUT_SENTIMENT_PROMPTS), n_samples=EVAL_SAMPLES, seed=EVAL_SEED)


@pytest.mark.parametrize("seed", [0])
@pytest.mark.parametrize("name", list(SENTIMENT_CASES))
def test_sentiment_rises_on_heldout_prompts(name: str, seed: int) -> None:
    case = SENTIMENT_CASES[name]
    envs = gym.make_vec(
        "textrl/Sentiment-v0",
        num_envs=case.num_envs,
        vectorization_mode="vector_entry_point",
        kl_coef=case.kl_coef,
    )
    agent = case.algo(case.policy, envs, seed=seed, verbose=0, **case.settings)
    before = evaluate_heldout(agent)
    agent.learn(total_timesteps=case.total_timesteps)
    after = evaluate_heldout(agent)
    print(
        f"\n{name} seed={seed}: held-out VADER {before.score_mean:+.3f} -> {after.score_mean:+.3f}, "
        f"KL to reference {before.kl_mean:.3f} -> {after.kl_mean:.3f} nats/response; "
        f"e.g. {after.prompts[0]!r} -> {after.completions[0]!r}"
    )
    assert math.isfinite(after.kl_mean), f"KL to the reference is {after.kl_mean}"
    assert after.score_mean >= before.score_mean + 0.3, (
        f"{name} moved the held-out sentiment only from {before.score_mean:.3f} to {after.score_mean:.3f}"
    )


def test_rloo_raises_arithmetic_accuracy() -> None:
    # 32 questions, so each is asked ~20 times in the budget. The tiny model knows sums as separate
    # facts, so RL sharpens the ones it trains on; it does not learn addition (held-out sums stay put).
    envs = gym.make_vec(
        "textrl/Arithmetic-v0", num_envs=64, vectorization_mode="vector_entry_point", num_prompts=32
    )
    agent = RLOO("LMPolicy", envs, seed=0, verbose=0, learning_rate=3e-4, k=8)
    questions = list(envs.unwrapped.prompts)

    def accuracy() -> float:
        """Exact match of sampled answers (8 per question), the quantity RLOO maximises."""
        return agent.evaluate(questions, n_samples=8, seed=EVAL_SEED).score_mean

    before = accuracy()
    agent.learn(total_timesteps=30_000)
    after = accuracy()
    print(f"\nRLOO Arithmetic-v0: sampled exact match {before:.3f} -> {after:.3f}")
    assert after >= before + 0.2, f"exact match moved only from {before:.3f} to {after:.3f}"
