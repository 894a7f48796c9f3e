"""The settings of the tiny pipeline runs the tests make (a few seconds each on the embedded model)."""

from __future__ import annotations

from typing import Any

TINY: dict[str, Any] = {
    "rounds": 2,
    "sft_demonstrations": 200,
    "sft_epochs": 1,
    "pairs_per_round": 64,
    "rm_epochs": 1,
    "rl_timesteps": 16 * 16 * 3,  # about three RL iterations
    "num_envs": 16,
    "eval_samples": 2,
}
