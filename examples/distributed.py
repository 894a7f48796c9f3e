"""Data-parallel RLOO on ``textrl/Sentiment-v0``: one script, run as one process or as many.

    python examples/distributed.py                                  # one process
    torchrun --nproc_per_node 2 examples/distributed.py             # 2 ranks on this machine
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 examples/distributed.py          # 2 machines x 8 GPUs (run on each)
    accelerate launch --multi_gpu --num_processes 2 examples/distributed.py   # through accelerate

Nothing in the script changes between them. Under a launcher the agent finds the launch
(``WORLD_SIZE``, ``RANK``, ...), joins the process group (NCCL on GPUs, gloo on CPUs), runs its own
vector env of ``--num-envs`` rows on its share of the prompts, averages gradients with DDP
(``--data-parallel fsdp`` shards the policy, optimizer and reference with FSDP2 instead) and takes
the same step as every other rank. Rank 0 prints, logs and writes the checkpoint; a checkpoint
written by N ranks resumes on any number of ranks.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from agents import RLOO, distributed
from textrl_env.default_model import HELDOUT_SENTIMENT_PROMPTS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timesteps", type=int, default=32 * 16 * 20, help="env steps x rows, over all ranks"
    )
    parser.add_argument(
        "--num-envs", type=int, default=16, help="rows of each rank's vector env (prompts x k)"
    )
    parser.add_argument("--k", type=int, default=4, help="completions per prompt (they stay on one rank)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default="auto", help="auto (this rank's GPU when there is one), cuda or cpu"
    )
    parser.add_argument("--data-parallel", default="ddp", choices=["ddp", "fsdp"])
    parser.add_argument("--out", type=Path, default=Path("runs/distributed"), help="logs and checkpoint")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train, print a before/after summary on rank 0 and save a checkpoint; returns the summary."""
    args = parse_args(argv)
    envs = gym.make_vec(
        "textrl/Sentiment-v0",
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        device=str(distributed.local_device(args.device)),  # cuda:LOCAL_RANK: each rank its own GPU
    )
    agent = RLOO(
        "LMPolicy",
        envs,
        k=args.k,
        learning_rate=args.learning_rate,
        seed=args.seed,
        tensorboard_log=args.out,
        verbose=0,
        data_parallel=args.data_parallel,
    )
    prompts = list(HELDOUT_SENTIMENT_PROMPTS)
    before = agent.evaluate(prompts, n_samples=2)  # every rank evaluates (the same result on each)
    agent.learn(total_timesteps=args.timesteps, progress_bar=True)  # the bar shows on rank 0 only
    after = agent.evaluate(prompts, n_samples=2)
    agent.save(args.out / "rloo")  # every rank calls it; rank 0 writes
    here = distributed.info()
    summary = {
        "world_size": here.world_size,
        "global_batch": here.world_size * args.num_envs,
        "score_before": before.score_mean,
        "score_after": after.score_mean,
        "iterations": agent.iteration,
    }
    if here.is_main:
        print(
            f"{here.world_size} rank(s) x {args.num_envs} rows = a global batch of {summary['global_batch']}; "
            f"{agent.iteration} updates; held-out VADER score {before.score_mean:+.3f} -> {after.score_mean:+.3f}; "
            f"checkpoint: {args.out / 'rloo'}"
        )
    return summary


if __name__ == "__main__":
    main()
