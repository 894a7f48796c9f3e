from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from agents.logger import Logger, make_output_formats


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _console() -> Console:
    return Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)


def test_csv_header_grows_and_old_rows_are_kept(tmp_path: Path) -> None:
    logger = Logger(tmp_path, formats=("csv",))
    logger.record("rollout/score_mean", 0.5)
    logger.dump(step=10)
    logger.record("rollout/score_mean", torch.tensor(0.75))
    logger.record("train/approx_kl", np.float32(0.125))
    logger.dump(step=20)
    logger.record("train/approx_kl", 0.25)
    logger.dump(step=30)
    path = tmp_path / "progress.csv"
    assert path.read_text().splitlines()[0] == "step,rollout/score_mean,train/approx_kl"
    assert _rows(path) == [
        {"step": "10", "rollout/score_mean": "0.5", "train/approx_kl": ""},
        {"step": "20", "rollout/score_mean": "0.75", "train/approx_kl": "0.125"},
        {"step": "30", "rollout/score_mean": "", "train/approx_kl": "0.25"},
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.csv"]  # no temp file left behind


def test_interrupted_header_rewrite_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = Logger(tmp_path, formats=("csv",))
    logger.record("a/x", 1.0)
    logger.dump(step=1)
    before = (tmp_path / "progress.csv").read_text()

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    logger.record("a/y", 2.0)
    with pytest.raises(KeyboardInterrupt):
        logger.dump(step=2)
    assert (tmp_path / "progress.csv").read_text() == before


def test_tensorboard_gets_scalars_and_histograms(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = Logger(tmp_path, formats=("csv", "tensorboard"))
    logger.record("train/policy_loss", torch.tensor(-0.5, requires_grad=True) * 1.0)
    logger.record("rollout/scores", torch.tensor([0.1, 0.2, 0.3]))  # a histogram, not a CSV column
    logger.dump(step=7)
    logger.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (scalar,) = events.Scalars("train/policy_loss")
    assert scalar.step == 7 and scalar.value == pytest.approx(-0.5)
    assert "rollout/scores" in events.Tags()["histograms"]
    assert "rollout/scores" not in _rows(tmp_path / "progress.csv")[0]


def test_rich_table_groups_by_namespace() -> None:
    console = _console()
    logger = Logger(formats=("rich",), console=console)
    logger.record("rollout/score_mean", 0.123456)
    logger.record("train/clip_fraction", torch.tensor(0.25))
    logger.record("time/tokens_per_s", 1234)
    logger.dump(step=4096)
    text = console.file.getvalue()
    assert "step 4,096" in text
    for fragment in ("rollout/", "score_mean", "0.1235", "train/", "clip_fraction", "0.25", "1,234"):
        assert fragment in text


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    console = _console()
    logger = Logger(tmp_path, formats=("csv", "rich"), quiet=True, console=console)
    logger.record("train/kl_coef", 0.05)
    logger.dump(step=1)
    assert console.file.getvalue() == ""
    assert _rows(tmp_path / "progress.csv") == [{"step": "1", "train/kl_coef": "0.05"}]


def test_record_mean_of_tensors_and_bad_formats(tmp_path: Path) -> None:
    logger = Logger(tmp_path, formats=("csv",))
    for value in (1.0, 2.0, 6.0):
        logger.record_mean("train/loss", torch.tensor(value))
    logger.dump(step=0)
    assert float(_rows(tmp_path / "progress.csv")[0]["train/loss"]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        Logger(tmp_path, formats=("xml",))
    with pytest.raises(ValueError, match="no folder was given"):
        make_output_formats(None, ("csv",))


def test_a_row_is_one_write_of_a_whole_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = Logger(tmp_path, formats=("csv",))
    logger.record("a/x", 1.0)
    logger.dump(step=1)  # the header: a temp file swapped in
    writes: list[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    logger.record("a/x", 2.5)
    logger.dump(step=2)
    assert writes == [b"2,2.5\n"]  # unbuffered: nothing waits in a Python buffer for a kill to lose


def test_a_fresh_run_starts_the_file_afresh(tmp_path: Path) -> None:
    (tmp_path / "progress.csv").write_text("step,a/x\n1,1.0\n")
    logger = Logger(tmp_path, formats=("csv",))
    logger.record("a/x", 9.0)
    logger.dump(step=5)
    assert _rows(tmp_path / "progress.csv") == [{"step": "5", "a/x": "9.0"}]


def test_a_continued_run_drops_a_half_written_last_row_and_appends(tmp_path: Path) -> None:
    from agents.logger import PartialRowWarning

    path = tmp_path / "progress.csv"
    path.write_text("step,a/x\n1,1.0\n2,2.0\n3,3.")  # killed while writing row 3
    logger = Logger(tmp_path, formats=("csv",))
    logger.continue_files()
    logger.record("a/x", 3.5)
    with pytest.warns(PartialRowWarning, match=r"progress\.csv ends in a half-written row.*'3,3\.'"):
        logger.dump(step=3)
    logger.record("a/x", 4.0)
    logger.record("a/y", 1.0)  # a new key: the header grows, every row kept
    logger.dump(step=4)
    assert _rows(path) == [
        {"step": "1", "a/x": "1.0", "a/y": ""},
        {"step": "2", "a/x": "2.0", "a/y": ""},
        {"step": "3", "a/x": "3.5", "a/y": ""},
        {"step": "4", "a/x": "4.0", "a/y": "1.0"},
    ]
    assert path.read_text().endswith("\n")


@pytest.mark.parametrize("left", ["", "ste", "step,a/x\n"])
def test_a_continued_run_on_an_empty_or_header_only_file(tmp_path: Path, left: str) -> None:
    path = tmp_path / "progress.csv"
    path.write_text(left)
    logger = Logger(tmp_path, formats=("csv",))
    logger.continue_files()
    logger.record("a/x", 1.0)
    if left == "ste":  # even the header was cut: nothing of it is kept
        with pytest.warns(UserWarning, match="half-written row"):
            logger.dump(step=1)
    else:
        logger.dump(step=1)
    assert path.read_text() == "step,a/x\n1,1.0\n"
