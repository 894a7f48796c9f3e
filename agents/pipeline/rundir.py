"""The run directory: its layout, the refusal to reuse one, atomic files, the state and the metrics log.

Layout of ``RUN_DIR/``::

    config.yaml                 the resolved PipelineConfig (textrl pipeline --config RUN_DIR/config.yaml reruns it)
    state.json                  status (running / interrupted / complete) and the stage in progress
    metrics.jsonl               one JSON object per event: stage results and every RL iteration's statistics
    summary.json                the per-round figures (rounds: round, gold_sft, gold_policy, proxy_policy, kl, ...)
    tensorboard/                TensorBoard events (RL iterations and per-round figures)
    plots/*.png                 the curves (textrl plot RUN_DIR redraws them)
    round_0/                    demonstrations.jsonl, sft/ (the SFT model), eval.json
    round_N/                    pairs.jsonl, labels.jsonl, preferences.jsonl, reward_model/, rm.json,
                                rl.json, rl_partial/ (while RL is interrupted), policy/ (agent checkpoint), eval.json

A stage is done when its output exists; every file is written to a temp file, fsynced and renamed
into place (directories through a temp directory), so a stage's output is whole or absent and
``--resume`` redoes exactly the stages that are absent.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMAT = "textrl-pipeline"
FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it, then ``os.replace`` it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:  # Ctrl-C included: never leave the temp file behind
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`write_bytes_atomic` of UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Indented JSON, written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_jsonl_atomic(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line, written atomically."""
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The objects of a JSONL file the pipeline wrote (blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


class MetricsLog:
    """``metrics.jsonl``: events keyed by ``(event, round, step)``; logging a key again replaces it.

    The whole file is rewritten atomically on each append (it stays small: a line per stage and
    per RL iteration), so a resumed stage that logs again never duplicates a line.

    Args:
        path: the file.
        write: False keeps the events in memory only (the ranks of a distributed run other than 0).
    """

    def __init__(self, path: Path, write: bool = True) -> None:
        self.path = path
        self.write = write
        self.records: list[dict[str, Any]] = read_jsonl(path) if path.is_file() else []

    @staticmethod
    def _key(record: dict[str, Any]) -> tuple[Any, ...]:
        return record.get("event"), record.get("round"), record.get("step")

    def log(self, event: str, round_: int, step: int | None = None, **values: Any) -> None:
        record = {"event": event, "round": round_, "step": step, "time": round(time.time(), 3), **values}
        key = self._key(record)
        self.records = [r for r in self.records if self._key(r) != key] + [record]
        if self.write:
            write_jsonl_atomic(self.path, self.records)

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == event]


class RunDirectory:
    """Paths of one run directory and its ``state.json``.

    Args:
        root: the run directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def summary_file(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def metrics_file(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def round(self, index: int) -> Path:
        return self.root / f"round_{index}"

    @property
    def sft_model(self) -> Path:
        return self.round(0) / "sft"

    def policy_checkpoint(self, index: int) -> Path:
        """The agent checkpoint after round ``index``'s RL (``.../model`` is the causal LM)."""
        return self.round(index) / "policy"

    def policy_model(self, index: int) -> Path:
        """The causal LM the policy is after round ``index`` (round 0: the SFT model)."""
        return self.sft_model if index == 0 else self.policy_checkpoint(index) / "model"

    def holds_run(self) -> bool:
        return self.state_file.is_file() or self.config_file.is_file()

    def state(self) -> dict[str, Any]:
        return read_json(self.state_file) if self.state_file.is_file() else {}

    def set_state(self, status: str, stage: str | None = None, **extra: Any) -> None:
        state = {"format": FORMAT, "format_version": FORMAT_VERSION, "status": status, "stage": stage}
        write_json_atomic(self.state_file, state | extra | {"updated": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def prepare(self, resume: bool, overwrite: bool) -> None:
        """Check the directory can take this run; with ``overwrite``, delete the previous run first.

        Raises:
            ValueError: both flags; ``resume`` with no run to resume; a directory holding a run without
                either flag; a non-empty directory that holds no run (never deleted, even with ``overwrite``).
        """
        if resume and overwrite:
            raise ValueError("--resume and --overwrite contradict each other; pass one of them")
        where = os.fspath(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"run directory {where} is a file; choose another --run_dir")
        occupied = self.root.is_dir() and any(self.root.iterdir())
        if resume:
            if not self.holds_run():
                raise ValueError(
                    f"nothing to resume in {where}: it holds no pipeline run; drop --resume to start one"
                )
            return
        if not occupied:
            return
        if not self.holds_run():
            raise ValueError(
                f"run directory {where} is not empty and holds no pipeline run; choose another --run_dir "
                "(textrl never deletes files it did not write)"
            )
        if not overwrite:
            status = self.state().get("status", "unknown")
            raise ValueError(
                f"run directory {where} already holds a run (status: {status}); pass --resume to continue it, "
                "--overwrite to delete it and start over, or choose another --run_dir"
            )
        shutil.rmtree(self.root)


__all__ = [
    "MetricsLog",
    "RunDirectory",
    "read_json",
    "read_jsonl",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_text_atomic",
]
