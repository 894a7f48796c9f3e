"""``textrl pipeline`` under ``torchrun``: rank 0 runs the file-writing stages, every rank the RL.

Two CPU ranks (gloo) run a tiny loop; the run directory must be what one process writes (one set
of files, written once), the RL must have trained on both ranks' rows, and a run started on two
ranks must continue as one process. A failure in one of rank 0's stages stops the other rank with
that error instead of leaving it waiting.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from agents.pipeline import PipelineConfig, load_run_config, run_pipeline
from agents.pipeline.ranks import Ranks
from agents.pipeline.rundir import read_jsonl
from tests.agents.distributed_launch import run_torchrun
from tests.agents.pipeline.tiny import TINY

NUM_ENVS, MAX_NEW_TOKENS = 16, PipelineConfig().max_new_tokens


def _flags(settings: dict[str, object]) -> list[str]:
    return [part for key, value in settings.items() for part in (f"--{key}", str(value))]


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("pipeline_ddp") / "run"
    settings = TINY | {
        "rounds": 1,
        "num_envs": NUM_ENVS,
        "early_stop_tolerance": 5.0,
        "early_stop_check_every": 256,
    }
    argv = ["-m", "agents.cli", "pipeline", "--run_dir", str(root), "--no_progress", *_flags(settings)]
    result = run_torchrun(argv, nproc=2, timeout=420)
    assert result.returncode == 0, result.output[-4000:]
    return root, result.output


def test_two_ranks_run_the_loop_into_one_run_directory(two_rank_run: tuple[Path, str]) -> None:
    root, output = two_rank_run
    summary = json.loads((root / "summary.json").read_text())
    assert summary["status"] == "complete" and [r["round"] for r in summary["rounds"]] == [1]
    assert json.loads((root / "state.json").read_text())["status"] == "complete"
    assert (root / "round_1" / "policy" / "model" / "model.safetensors").is_file()
    assert not (root / "round_1" / "rl_partial").exists() and not list(root.rglob("*.tmp"))
    # Written once: one TensorBoard stream, one set of stage rules and one table on the console.
    assert len(list((root / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert output.count("round 0: SFT") == 1 and output.count("RLHF pipeline") == 1


def test_the_rl_trained_on_both_ranks_rows(two_rank_run: tuple[Path, str]) -> None:
    root, _ = two_rank_run
    rl = [r for r in read_jsonl(root / "metrics.jsonl") if r["event"] == "rl"]
    # One rank's rows reach at most NUM_ENVS * MAX_NEW_TOKENS timesteps per rollout; the global
    # batch of two ranks' rows counts both.
    assert rl and rl[0]["step"] > NUM_ENVS * MAX_NEW_TOKENS
    assert rl[0]["step"] % (2 * NUM_ENVS) == 0
    info = json.loads((root / "round_1" / "rl.json").read_text())
    assert info["end_timesteps"] >= info["target_timesteps"]
    assert len(info["early_stop_checks"]) >= 2  # the gold-vs-proxy check ran on the ranks' averaged samples


def test_a_run_started_on_two_ranks_continues_as_one_process(
    two_rank_run: tuple[Path, str], tmp_path: Path
) -> None:
    root = tmp_path / "run"  # a copy: the other tests read the two-rank run as it was written
    shutil.copytree(two_rank_run[0], root)
    # Round 2's RL loads round 1's checkpoint (written by two ranks) into one process.
    more = dataclasses.replace(load_run_config(root), run_dir=str(root), rounds=2)
    run_pipeline(more, resume=True, progress=False, console=Console(quiet=True))
    summary = json.loads((root / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    rl = json.loads((root / "round_2" / "rl.json").read_text())
    assert rl["start_timesteps"] == json.loads((root / "round_1" / "rl.json").read_text())["end_timesteps"]


def test_a_failure_in_a_rank_0_stage_stops_the_other_rank_with_it(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("not a run directory")
    argv = ["-m", "agents.cli", "pipeline", "--run_dir", str(not_a_folder), "--no_progress"]
    result = run_torchrun(argv, nproc=2, timeout=120)  # a hang would be killed and fail here
    assert result.returncode != 0
    assert "is a file; choose another --run_dir" in result.output
    assert "rank 0 failed during the run directory's set-up, so rank 1 stops too" in result.output
    assert not_a_folder.read_text() == "not a run directory"


def test_in_one_process_a_rank_0_stage_simply_runs() -> None:
    ranks = Ranks()
    assert not ranks.enabled and ranks.is_main
    assert ranks.on_main(lambda: 41 + 1, "a stage") == 42
    with pytest.raises(ValueError, match="boom"):
        ranks.on_main(lambda: (_ for _ in ()).throw(ValueError("boom")), "a stage")
