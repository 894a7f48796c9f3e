"""Register your own env: your prompts and your reward on a textrl model, under an id of your own.

The env is textrl's generic ``TextGenerationEnv`` (and its native vector env) with keyword
arguments fixed at registration, as Gymnasium's own ids do. Here the task is to write *short*
upbeat answers: the reward is VADER sentiment minus a little per word.

    python examples/register_env.py                   # under a minute on a laptop CPU
    python examples/register_env.py --timesteps 256   # a smoke run
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

import textrl_env  # noqa: F401  (registers the built-in ids)
from agents import RLOO
from reward_models import SentimentReward
from textrl_env.default_model import DEFAULT_MODEL_ID, SENTIMENT_PROMPTS

ENV_ID = "MyProject/UpbeatAndBrief-v0"  # namespace/Name-vVersion, like Gymnasium's ids
SENTIMENT = SentimentReward()


def upbeat_and_brief(prompts: list[str], completions: list[str]) -> list[float]:
    """Any ``reward(prompts, completions) -> list[float]`` works; batched, one score per completion."""
    sentiment = SENTIMENT(prompts, completions)
    return [s - 0.02 * len(c.split()) for s, c in zip(sentiment, completions, strict=True)]


def register() -> None:
    """Register once per process (re-registering an id warns)."""
    if ENV_ID in gym.registry:
        return
    gym.register(
        id=ENV_ID,
        entry_point="textrl_env.text_env:TextGenerationEnv",
        vector_entry_point="textrl_env.vector_env:TextGenerationVectorEnv",  # the fast batched env
        kwargs={
            "model": DEFAULT_MODEL_ID,  # any AutoModelForCausalLM id or directory ("gpt2" with network)
            "prompts": list(SENTIMENT_PROMPTS),
            "reward_model": upbeat_and_brief,
            "kl_coef": 0.05,
            "max_new_tokens": 16,
            "max_prompt_tokens": 16,
        },
    )


def main(argv: Sequence[str] | None = None) -> tuple[float, float]:
    """Register, check, train RLOO briefly; returns the mean reward before and after."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=16_000)
    parser.add_argument("--num-envs", type=int, default=32)
    args = parser.parse_args(argv)
    register()
    check_env(gym.make(ENV_ID).unwrapped)  # Gymnasium's own checks pass on a textrl env
    envs = gym.make_vec(ENV_ID, num_envs=args.num_envs, vectorization_mode="vector_entry_point")
    agent = RLOO("LMPolicy", envs, learning_rate=1e-3, k=4, seed=0, verbose=0)  # the tuned Sentiment settings
    prompts = list(SENTIMENT_PROMPTS[:8])
    before = agent.evaluate(prompts, n_samples=4).score_mean
    agent.learn(total_timesteps=args.timesteps, progress_bar=True)
    after = agent.evaluate(prompts, n_samples=4).score_mean
    print(f"{ENV_ID}: mean reward {before:+.3f} -> {after:+.3f}")
    return before, after


if __name__ == "__main__":
    main()
