"""The run directory: refusing to reuse one, --overwrite and --resume, atomic files, the metrics log."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.pipeline.rundir import MetricsLog, RunDirectory, read_jsonl, write_json_atomic


def test_a_fresh_or_empty_directory_is_taken(tmp_path: Path) -> None:
    RunDirectory(tmp_path / "new").prepare(resume=False, overwrite=False)
    (tmp_path / "empty").mkdir()
    RunDirectory(tmp_path / "empty").prepare(resume=False, overwrite=False)


def test_a_directory_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "run")
    run.root.mkdir()
    run.set_state("interrupted", "round 1: RL")
    (run.root / "round_0").mkdir()
    with pytest.raises(ValueError, match=r"already holds a run \(status: interrupted\); pass --resume"):
        run.prepare(resume=False, overwrite=False)
    run.prepare(resume=True, overwrite=False)
    assert run.root.is_dir()
    run.prepare(resume=False, overwrite=True)
    assert not run.root.exists()
    with pytest.raises(ValueError, match="contradict"):
        run.prepare(resume=True, overwrite=True)


def test_a_foreign_folder_is_never_deleted(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    run = RunDirectory(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="holds no pipeline run; choose another --run_dir"):
            run.prepare(resume=False, overwrite=overwrite)
    with pytest.raises(ValueError, match="nothing to resume"):
        run.prepare(resume=True, overwrite=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_atomic_writes_leave_no_temp_files(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    write_json_atomic(tmp_path / "a.json", {"x": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 2\n}\n'


def test_metrics_log_replaces_an_event_logged_again(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.log("rl", 1, 32, score=0.1)
    log.log("rl", 1, 64, score=0.2)
    log.log("rl", 1, 32, score=0.3)  # a resumed stage logs the same key again
    again = MetricsLog(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["score"]) for r in again.events("rl")] == [(64, 0.2), (32, 0.3)]
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 2
