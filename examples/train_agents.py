"""Train each agent (REINFORCE, RLOO, PPO) on ``textrl/Sentiment-v0`` with its tuned hyperparameters.

``agents.hyperparams.tuned_hyperparams(env_id, agent)`` returns the settings that learn on the
embedded default model (as RL Zoo's tables do); ``textrl train ENV_ID --agent A`` uses the same ones.
The library's defaults (``learning_rate=1e-5``) are for real models and barely move the tiny one.

    python examples/train_agents.py                  # about a minute on a laptop CPU
    python examples/train_agents.py --timesteps 256  # a smoke run
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import gymnasium as gym
from rich.console import Console
from rich.table import Table

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from agents import PPO, REINFORCE, RLOO
from agents.hyperparams import tuned_hyperparams
from textrl_env.default_model import HELDOUT_SENTIMENT_PROMPTS

ENV_ID = "textrl/Sentiment-v0"
AGENTS = {"reinforce": REINFORCE, "rloo": RLOO, "ppo": PPO}


def train(name: str, timesteps: int | None) -> tuple[float, float]:
    """One agent from its tuned entry; returns the held-out mean VADER score before and after."""
    settings = tuned_hyperparams(ENV_ID, name)
    tuned_budget = settings.pop("total_timesteps")
    envs = gym.make_vec(ENV_ID, num_envs=settings.pop("num_envs"), vectorization_mode="vector_entry_point")
    agent = AGENTS[name](
        settings.pop("policy"), envs, seed=0, verbose=0, **settings
    )  # the rest: config fields
    prompts = list(HELDOUT_SENTIMENT_PROMPTS)  # openers the agent never trains on
    before = agent.evaluate(prompts, n_samples=8, seed=1234).score_mean
    agent.learn(total_timesteps=timesteps or tuned_budget, progress_bar=True)
    after = agent.evaluate(prompts, n_samples=8, seed=1234).score_mean
    return before, after


def main(argv: Sequence[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=None, help="override the tuned budget")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    args = parser.parse_args(argv)
    results = {name: train(name, args.timesteps) for name in args.agents}
    table = Table(title=f"{ENV_ID}, held-out openers")
    for column in ("agent", "before", "after"):
        table.add_column(column, justify="right")
    for name, (before, after) in results.items():
        table.add_row(name, f"{before:+.3f}", f"{after:+.3f}")
    Console().print(table)
    return results


if __name__ == "__main__":
    main()
