"""Quickstart: train RLOO on ``textrl/Sentiment-v0`` with the embedded default model, offline.

The default model starts out as likely to write a negative review as a positive one. RLOO samples
``k`` completions per review opener, scores each with VADER sentiment minus a KL penalty to the
starting model, and pushes the policy toward the completions that beat their siblings' mean.

    python examples/quickstart.py                  # about 1-2 minutes on a laptop CPU
    python examples/quickstart.py --timesteps 2000 # a smoke run

Ends with a before/after table on held-out openers the agent never trained on, and saves a
checkpoint (``RLOO.load`` it to continue).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
from rich.console import Console
from rich.table import Table

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from agents import RLOO, Evaluation
from textrl_env.default_model import HELDOUT_SENTIMENT_PROMPTS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=32 * 16 * 40, help="env steps x rows to train for")
    parser.add_argument("--num-envs", type=int, default=32, help="rows of the vector env (prompts x k)")
    parser.add_argument("--k", type=int, default=4, help="completions per prompt")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="logs and checkpoint")
    return parser.parse_args(argv)


def comparison_table(before: Evaluation, after: Evaluation, n_examples: int = 6) -> tuple[Table, Table]:
    """A summary table (mean score, mean KL) and a table of sample completions before and after."""
    summary = Table(title="Held-out review openers")
    summary.add_column("")
    summary.add_column("mean VADER score", justify="right")
    summary.add_column("mean KL to start", justify="right")
    # k1 KL is a signed estimate: at the start it is 0 up to rounding, which would print as -0.000.
    summary.add_row(
        "before training",
        f"{before.score_mean:+.3f}",
        f"{before.kl_mean + 0.0:.3f}".replace("-0.000", "0.000"),
    )
    summary.add_row("after training", f"{after.score_mean:+.3f}", f"{after.kl_mean:.3f}")
    samples = Table(title="Sample completions", show_lines=True)
    samples.add_column("prompt", style="bold")
    samples.add_column("before")
    samples.add_column("after")
    for i in range(0, min(4 * n_examples, len(before.prompts)), 4):  # one sample of each of the first prompts
        samples.add_row(
            before.prompts[i],
            f"{before.completions[i]} [dim]({before.scores[i]:+.2f})[/dim]",
            f"{after.completions[i]} [dim]({after.scores[i]:+.2f})[/dim]",
        )
    return summary, samples


def main(argv: Sequence[str] | None = None) -> Evaluation:
    """Train, print the before/after tables and save a checkpoint; returns the final evaluation."""
    args = parse_args(argv)
    console = Console()
    envs = gym.make_vec(
        "textrl/Sentiment-v0",
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        kl_coef=args.kl_coef,
        device=args.device,
    )
    agent = RLOO(
        "LMPolicy",
        envs,
        k=args.k,
        learning_rate=args.learning_rate,
        seed=args.seed,
        tensorboard_log=args.out,
        verbose=0,
    )
    prompts = list(HELDOUT_SENTIMENT_PROMPTS)
    before = agent.evaluate(prompts, n_samples=4)
    agent.learn(total_timesteps=args.timesteps, progress_bar=True)
    after = agent.evaluate(prompts, n_samples=4)
    agent.save(args.out / "rloo")
    for table in comparison_table(before, after):
        console.print(table)
    console.print(f"Logs: {args.out}/progress.csv and TensorBoard; checkpoint: {args.out / 'rloo'}")
    return after


if __name__ == "__main__":
    main()
