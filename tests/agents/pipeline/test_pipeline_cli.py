"""``textrl pipeline`` and ``textrl plot`` from the command line; Ctrl-C during RL, then ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agents.cli import main
from agents.pipeline.rundir import read_jsonl
from tests.agents.pipeline.tiny import TINY

ROOT = Path(__file__).resolve().parents[3]


def textrl(*args: str) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "agents.cli", "pipeline", *args, "--no_progress"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_rl(run_dir: Path, process: subprocess.Popen, timeout: float = 180.0) -> None:
    """Until the first RL iteration of round 1 is logged (the Ctrl-C handler is then in place)."""
    deadline = time.monotonic() + timeout
    metrics = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the pipeline ended before RL started:\n{process.stdout.read()}")  # type: ignore[union-attr]
        if metrics.is_file() and any(r["event"] == "rl" for r in read_jsonl(metrics)):
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail("RL did not start in time")


def test_sigint_during_rl_leaves_a_checkpoint_that_resume_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY | {"rounds": 1, "rl_timesteps": 16 * 16 * 60}))
    process = textrl("--config", str(config), "--run_dir", str(run_dir))
    wait_for_rl(run_dir, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 130, output
    assert "--resume" in output
    assert (run_dir / "round_1" / "rl_partial" / "textrl_checkpoint.json").is_file()
    assert not (run_dir / "round_1" / "policy").exists()
    assert json.loads((run_dir / "state.json").read_text())["status"] == "interrupted"
    stopped_at = max(r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "rl")

    resumed = textrl("--run_dir", str(run_dir), "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and [r["round"] for r in summary["rounds"]] == [1]
    rl = json.loads((run_dir / "round_1" / "rl.json").read_text())
    assert rl["end_timesteps"] >= rl["target_timesteps"] > stopped_at
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "rl"]
    assert steps == sorted(set(steps)) and steps[-1] > stopped_at  # continued, nothing logged twice
    assert not (run_dir / "round_1" / "rl_partial").exists()

    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "plots" / "overview.png").stat().st_size > 10_000


def test_help_of_both_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipeline", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--rounds" in text and "--kl_target" in text and "--resume" in text and "simulated" in text
    assert main(["plot", "--help"]) == 0
    assert "RUN_DIR" in capsys.readouterr().out


def test_a_used_run_directory_is_an_error_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state.json").write_text('{"status": "complete"}')
    assert main(["pipeline", "--run_dir", str(tmp_path)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["pipeline", "--run_dir", str(tmp_path / "none"), "--resume"]) == 2
    assert main(["plot", str(tmp_path)]) == 2
