"""SIGKILL while textrl writes a checkpoint, a reward model, a preference file or progress.csv: nothing is lost.

A child process writes version 1, then starts writing version 2 with a writer patched to stall at
a chosen point (half a file written; every file written but not yet renamed; between the two
renames that replace a directory), says READY, and is killed with SIGKILL. The parent then loads
the path and must find version 1, intact. ``progress.csv`` is appended to, not replaced: there the
kill cuts a row in half, and a resumed run must drop that row (with a warning) and append cleanly.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agents import REINFORCE
from agents.logger import Logger, PartialRowWarning
from reward_models import LearnedRewardModel, read_preferences
from tests.agents.test_ppo import make_env

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

STALLS = {
    # half of the trainer state written, then stuck: the temp directory is incomplete
    "mid_file": """
        import torch
        real_save = torch.save
        def stalled_save(obj, f, *a, **k):
            real_save(obj, f, *a, **k)
            size = os.path.getsize(f)
            with open(f, "r+b") as handle:
                handle.truncate(size // 2)
            ready()
        torch.save = stalled_save
    """,
    # every file written, stuck in the fsync before the rename
    "before_rename": """
        import reward_models.atomic_io as atomic_io
        atomic_io.fsync_tree = lambda root: ready()
    """,
    # the previous directory moved aside, the new one not yet renamed in: the path is missing
    "between_renames": """
        real_replace = os.replace
        calls = []
        def stalled_replace(src, dst):
            real_replace(src, dst)
            if ".old-" in str(dst):
                ready()
        os.replace = stalled_replace
    """,
}

PRELUDE = """
import os, sys, time
sys.path.insert(0, {repo!r})
def ready():
    print("READY", flush=True)
    time.sleep(600)
"""

WRITERS = {
    "checkpoint": """
        from agents import REINFORCE
        from tests.agents.test_ppo import make_env
        agent = REINFORCE("LMPolicy", make_env(), seed=0, verbose=0)
        agent.num_timesteps = 111
        agent.save(PATH)
        agent.num_timesteps = 222
        {stall}
        agent.save(PATH)
    """,
    "reward_model": """
        from reward_models import LearnedRewardModel
        from reward_models.atomic_io import atomic_directory
        from tests.reward_models.conftest import tiny_reward_model
        from tests.conftest import build_char_tokenizer
        tokenizer = build_char_tokenizer()
        reward = LearnedRewardModel(tiny_reward_model(vocab_size=len(tokenizer), pad_token_id=0), tokenizer, gain=1.5)
        reward.save_pretrained(PATH)
        reward.set_normalization(gain=9.0, bias=0.0)
        {stall}
        import torch
        reward.save_pretrained(PATH)
    """,
}


def run_and_kill(script: str, timeout: float = 120.0) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        assert child.stdout is not None
        line = child.stdout.readline()
        while line and "READY" not in line and time.monotonic() < deadline:
            line = child.stdout.readline()
        assert "READY" in line, (
            f"the writer never reached its stall: {child.stderr.read() if child.stderr else ''}"
        )
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def script_for(kind: str, stall: str, path: Path) -> str:
    body = WRITERS[kind].format(stall=textwrap.indent(textwrap.dedent(STALLS[stall]), " " * 8).strip())
    return PRELUDE.format(repo=str(REPO)) + f"PATH = {str(path)!r}\n" + textwrap.dedent(body)


@pytest.mark.parametrize("stall", sorted(STALLS))
def test_a_checkpoint_survives_sigkill_during_the_next_save(tmp_path: Path, stall: str) -> None:
    path = tmp_path / "ckpt"
    run_and_kill(script_for("checkpoint", stall, path))
    agent = REINFORCE.load(path, make_env(), verbose=0)
    assert agent.num_timesteps == 111


@pytest.mark.parametrize("stall", ["before_rename", "between_renames"])
def test_a_reward_model_survives_sigkill_during_the_next_save(tmp_path: Path, stall: str) -> None:
    path = tmp_path / "rm"
    run_and_kill(script_for("reward_model", stall, path))
    assert LearnedRewardModel.from_pretrained(path).gain == 1.5


def test_a_preference_file_survives_sigkill_during_an_append(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    script = PRELUDE.format(repo=str(REPO)) + textwrap.dedent(f"""
        from reward_models import PreferencePair, append_preferences, write_preferences
        import reward_models.preferences as preferences
        write_preferences({str(path)!r}, [PreferencePair("p", "a", "b"), PreferencePair("q", "c", "d")])
        real_fsync = os.fsync
        def stalled_fsync(fd):
            real_fsync(fd)
            ready()
        preferences.os.fsync = stalled_fsync
        append_preferences({str(path)!r}, [PreferencePair("r", "e", "f")])
    """)
    run_and_kill(script)
    pairs = read_preferences(path)
    assert [p.prompt for p in pairs] == ["p", "q"]


def test_progress_csv_survives_sigkill_mid_row_and_a_resumed_run_appends(tmp_path: Path) -> None:
    script = PRELUDE.format(repo=str(REPO)) + textwrap.dedent(f"""
        from agents.logger import Logger
        logger = Logger({str(tmp_path)!r}, formats=("csv",))
        for step in (1, 2):
            logger.record("train/loss", step / 4)
            logger.dump(step=step)
        real_write = os.write
        def stalled_write(fd, data):
            real_write(fd, bytes(data)[: len(data) // 2])  # half the row reaches the file
            ready()
        os.write = stalled_write
        logger.record("train/loss", 0.123456789)
        logger.dump(step=3)
    """)
    run_and_kill(script)
    path = tmp_path / "progress.csv"
    assert not path.read_text().endswith("\n")  # the kill did cut a row
    resumed = Logger(tmp_path, formats=("csv",))
    resumed.continue_files()
    resumed.record("train/loss", 0.75)
    with pytest.warns(PartialRowWarning, match=re.escape(str(path))):
        resumed.dump(step=3)
    with path.open(newline="") as f:
        assert list(csv.DictReader(f)) == [
            {"step": "1", "train/loss": "0.25"},
            {"step": "2", "train/loss": "0.5"},
            {"step": "3", "train/loss": "0.75"},
        ]
