"""``textrl train`` under ``torchrun --nproc_per_node 2``: rank 0 reports and writes, the run resumes in one process."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym

from agents import RLOO
from tests.agents.distributed_launch import run_torchrun


def test_textrl_train_under_torchrun(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["-m", "agents.cli", "train", "textrl/Sentiment-v0", "--agent", "rloo", "--total_timesteps", "1"]
    argv += ["--num_envs", "4", "--k", "2", "--minibatch_size", "4", "--eval_samples", "1", "--no_progress"]
    result = run_torchrun([*argv, "--out", str(out)], nproc=2, timeout=300)
    assert result.returncode == 0, result.output[-3000:]
    assert result.output.count("held-out reward") == 1  # one report, from rank 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["run"]["num_envs"] == 4
    assert len((out / "progress.csv").read_text().splitlines()) == 2  # header + the one update, once
    envs = gym.make_vec("textrl/Sentiment-v0", num_envs=4, vectorization_mode="vector_entry_point")
    assert RLOO.load(out / "agent", env=envs, verbose=0).iteration == 1
