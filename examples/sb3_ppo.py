"""Stable-Baselines3's own PPO on a textrl env, through the ``agents.TextRLSB3Policy`` adapter.

SB3 sees an ordinary Gymnasium env (``Dict`` observations of token ids, ``Discrete`` actions); the
adapter's actor is the env's language model, its critic a small value head, so SB3's PPO trains the
very model the env scores and measures the KL against. One env, SB3's usual loop and callbacks.
textrl's own ``agents.PPO`` batches many episodes on the native vector env and is much faster.

    python examples/sb3_ppo.py                  # a few minutes on a laptop CPU
    python examples/sb3_ppo.py --timesteps 128  # a smoke run
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import gymnasium as gym
import stable_baselines3 as sb3
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from agents import TextRLSB3Policy


def main(argv: Sequence[str] | None = None) -> tuple[float, float]:
    """Train SB3's PPO on ``textrl/Sentiment-v0``; returns the mean episode return before and after."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=8192, help="tokens (env steps) to train for")
    parser.add_argument("--eval-episodes", type=int, default=32)
    args = parser.parse_args(argv)
    env = Monitor(gym.make("textrl/Sentiment-v0"))  # records true episode returns for evaluate_policy
    model = sb3.PPO(
        TextRLSB3Policy, env, n_steps=128, batch_size=64, n_epochs=4, learning_rate=1e-3,
        seed=0, device="cpu", verbose=0,
    )  # fmt: skip
    before, _ = evaluate_policy(model, env, n_eval_episodes=args.eval_episodes)
    model.learn(total_timesteps=args.timesteps, progress_bar=False)
    after, _ = evaluate_policy(model, env, n_eval_episodes=args.eval_episodes)
    print(f"SB3 PPO on textrl/Sentiment-v0: mean return {before:+.3f} -> {after:+.3f}")
    return float(before), float(after)


if __name__ == "__main__":
    main()
