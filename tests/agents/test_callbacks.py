from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from stable_baselines3.common.callbacks import BaseCallback, EveryNTimesteps

from agents.callbacks import CallbackRunner, ProgressBarCallback, convert_callback
from agents.logger import Logger


class DummyAgent:
    """The smallest callback host: what a textrl algorithm exposes."""

    def __init__(self, tmp_path: Path | None = None) -> None:
        self.num_timesteps = 0
        self.logger = Logger(tmp_path, formats=("csv",)) if tmp_path else Logger(formats=(), quiet=True)
        self.env = SimpleNamespace(num_envs=4)

    def get_env(self) -> Any:
        return self.env

    def learn(self, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> DummyAgent:
        runner = CallbackRunner(callback, self, progress_bar=progress_bar)
        runner.on_training_start(total_timesteps)
        stop = False
        while self.num_timesteps < total_timesteps and not stop:
            runner.on_rollout_start()
            for _ in range(2):  # two env steps per rollout
                self.num_timesteps += self.env.num_envs
                if not runner.on_step(rewards=[1.0] * self.env.num_envs):
                    stop = True
                    break
            runner.on_rollout_end()
        runner.on_training_end()
        return self


class Recorder(BaseCallback):
    """An unmodified SB3 callback subclass: records the lifecycle, stops after ``stop_after`` steps."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.events: list[str] = []

    def _on_training_start(self) -> None:
        self.events.append(f"start:{self.locals['total_timesteps']}")

    def _on_rollout_start(self) -> None:
        self.events.append("rollout_start")

    def _on_step(self) -> bool:
        self.events.append(f"step:{self.num_timesteps}:{len(self.locals['rewards'])}")
        self.logger.record("callback/n_calls", self.n_calls)
        return self.stop_after is None or self.n_calls < self.stop_after

    def _on_rollout_end(self) -> None:
        self.events.append("rollout_end")

    def _on_training_end(self) -> None:
        self.events.append("end")


def test_sb3_callback_lifecycle_unchanged() -> None:
    recorder = Recorder()
    agent = DummyAgent().learn(16, callback=recorder)
    assert recorder.events == [
        "start:16", "rollout_start", "step:4:4", "step:8:4", "rollout_end",
        "rollout_start", "step:12:4", "step:16:4", "rollout_end", "end",
    ]  # fmt: skip
    assert recorder.model is agent and recorder.training_env is agent.env
    assert recorder.logger is agent.logger


def test_callback_returning_false_stops_training() -> None:
    recorder = Recorder(stop_after=3)
    agent = DummyAgent().learn(1_000, callback=recorder)
    assert agent.num_timesteps == 12  # stopped on the third step, not at 1000
    assert recorder.events[-2:] == ["rollout_end", "end"]  # training end still runs


def test_function_list_and_sb3_event_callbacks() -> None:
    seen: list[int] = []

    def stop_at_20(locals_: dict, globals_: dict) -> bool:
        seen.append(locals_["self"].num_timesteps)
        return locals_["self"].num_timesteps < 20

    recorder = Recorder()
    every = EveryNTimesteps(n_steps=8, callback=Recorder())
    agent = DummyAgent().learn(100, callback=[stop_at_20, recorder, every])
    assert agent.num_timesteps == 20 and seen == [4, 8, 12, 16, 20]
    assert [e for e in every.callback.events if e.startswith("step")] == ["step:8:4", "step:16:4"]


def test_progress_bar_draws_with_rich() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True)
    bar = ProgressBarCallback(console=console, description="textrl")
    DummyAgent().learn(16, callback=bar)
    text = console.file.getvalue()
    assert "textrl" in text and "16/16" in text
    assert bar.progress is None  # stopped


def test_progress_bar_flag_adds_one() -> None:
    callback = convert_callback(None, progress_bar=True)
    assert any(isinstance(c, ProgressBarCallback) for c in callback.callbacks)


def test_bad_callbacks_and_hosts() -> None:
    with pytest.raises(TypeError, match="callback must be None"):
        convert_callback(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="missing logger, get_env"):
        CallbackRunner(None, SimpleNamespace(num_timesteps=0))  # type: ignore[arg-type]


def test_callback_metrics_reach_the_agent_logger(tmp_path: Path) -> None:
    agent = DummyAgent(tmp_path)
    agent.learn(8, callback=Recorder())
    agent.logger.dump(step=agent.num_timesteps)
    assert "callback/n_calls" in (tmp_path / "progress.csv").read_text()
