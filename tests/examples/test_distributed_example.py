"""examples/distributed.py runs unchanged with plain ``python``, ``torchrun --nproc_per_node 2`` and ``accelerate launch``."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

from agents import RLOO
from tests.agents.distributed_launch import ROOT, free_port, run_single, run_torchrun

SCRIPT = str(ROOT / "examples" / "distributed.py")
TINY = ["--timesteps", "1", "--num-envs", "4", "--k", "2"]  # one update


def _resumes(checkpoint: Path) -> RLOO:
    envs = gym.make_vec("textrl/Sentiment-v0", num_envs=4, vectorization_mode="vector_entry_point")
    return RLOO.load(checkpoint, env=envs, verbose=0)


def test_plain_python(tmp_path: Path) -> None:
    result = run_single([SCRIPT, *TINY, "--out", str(tmp_path)], timeout=240)
    assert result.returncode == 0, result.output[-3000:]
    assert "1 rank(s) x 4 rows = a global batch of 4; 1 updates" in result.output
    assert (tmp_path / "progress.csv").is_file()
    assert _resumes(tmp_path / "rloo").iteration == 1


def test_torchrun_two_processes(tmp_path: Path) -> None:
    result = run_torchrun([SCRIPT, *TINY, "--out", str(tmp_path)], nproc=2, timeout=300)
    assert result.returncode == 0, result.output[-3000:]
    assert result.output.count("2 rank(s) x 4 rows = a global batch of 8; 1 updates") == 1  # rank 0 prints
    rows = (tmp_path / "progress.csv").read_text().splitlines()
    assert len(rows) == 2  # header + one update, written once (by rank 0)
    resumed = _resumes(tmp_path / "rloo")  # a 2-rank checkpoint, resumed in this single process
    assert resumed.iteration == 1 and json.loads((tmp_path / "rloo" / "textrl_checkpoint.json").read_text())


def test_accelerate_launch_two_processes(tmp_path: Path) -> None:
    """accelerate's torchrun-backed launcher (``--multi_gpu``; on a CPU-only machine the ranks use gloo)."""
    pytest.importorskip("accelerate")
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launcher += ["--main_process_port", str(free_port())]
    result = run_single([*launcher, SCRIPT, *TINY, "--out", str(tmp_path)], timeout=300)
    assert result.returncode == 0, result.output[-3000:]
    assert result.output.count("2 rank(s) x 4 rows = a global batch of 8; 1 updates") == 1
    assert _resumes(tmp_path / "rloo").iteration == 1
