"""Stopping RL cleanly: Ctrl-C saves at an iteration boundary (and resumes exactly), the divergence stop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents import RLOO
from agents.pipeline.control import GoldProxyDivergence, GracefulInterrupt, SaveOnInterrupt
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv

PROMPTS = ["the movie", "i liked", "bb"]


def a_fraction(prompts: list[str], completions: list[str]) -> list[float]:
    return [c.count("a") / max(len(c), 1) for c in completions]


def make_agent() -> RLOO:
    env = TextGenerationVectorEnv(
        build_tiny_lm(), build_char_tokenizer(), PROMPTS, a_fraction, num_envs=8, max_new_tokens=6
    )
    return RLOO("LMPolicy", env, k=4, learning_rate=1e-2, seed=0, verbose=0)


class RequestAfter(BaseCallback):
    """Plays Ctrl-C: sets the flag after ``n`` env steps (mid-rollout)."""

    def __init__(self, interrupt: GracefulInterrupt, n: int) -> None:
        super().__init__()
        self.interrupt, self.n, self.count = interrupt, n, 0

    def _on_step(self) -> bool:
        self.count += 1
        if self.count == self.n:
            self.interrupt.requested = True
        return True


def test_interrupt_saves_at_a_boundary_and_resume_is_exact(tmp_path: Path) -> None:
    total = 8 * 6 * 6  # a few iterations
    uninterrupted = make_agent().learn(total)
    interrupt = GracefulInterrupt()
    save = SaveOnInterrupt(interrupt, tmp_path / "partial")
    agent = make_agent()
    agent.learn(total, callback=[RequestAfter(interrupt, 9), save])
    assert save.saved and (tmp_path / "partial" / "textrl_checkpoint.json").is_file()
    assert 0 < agent.num_timesteps < total
    env = TextGenerationVectorEnv(
        build_tiny_lm(), build_char_tokenizer(), PROMPTS, a_fraction, num_envs=8, max_new_tokens=6
    )
    resumed = RLOO.load(tmp_path / "partial", env=env, verbose=0)
    resumed.learn(total - resumed.num_timesteps, reset_num_timesteps=False)
    assert resumed.num_timesteps == uninterrupted.num_timesteps
    for a, b in zip(resumed.policy.parameters(), uninterrupted.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def scripted(values: list[tuple[float, float]]):  # noqa: ANN201
    readings = iter(values)
    return lambda: next(readings)


def test_divergence_stops_rl_when_gold_falls_while_proxy_rises() -> None:
    agent = make_agent()
    check_every = 8 * 6  # about one iteration
    stop = GoldProxyDivergence(scripted([(0.5, 0.0), (0.6, 0.5), (0.55, 0.7), (0.3, 0.9)] + [(0.0, 0.0)] * 50),
                               check_every, tolerance=0.1)  # fmt: skip
    agent.learn(check_every * 20, callback=stop)
    assert stop.stopped_at is not None and agent.num_timesteps == stop.stopped_at < check_every * 20
    assert [h[1] for h in stop.history] == [0.5, 0.6, 0.55, 0.3]


def test_no_stop_when_the_proxy_falls_with_gold() -> None:
    agent = make_agent()
    check_every = 8 * 6
    readings = [(0.5, 0.5), (0.6, 0.6), (0.3, 0.2)] + [(0.3, 0.2)] * 50
    stop = GoldProxyDivergence(scripted(readings), check_every, tolerance=0.1)
    agent.learn(check_every * 4, callback=stop)
    assert stop.stopped_at is None and agent.num_timesteps >= check_every * 4


def test_divergence_tolerance_is_checked() -> None:
    with pytest.raises(ValueError, match="tolerance must be a finite number > 0"):
        GoldProxyDivergence(lambda: (0.0, 0.0), 10, tolerance=0.0)


def test_first_sigint_sets_the_flag_second_raises() -> None:
    before = signal.getsignal(signal.SIGINT)
    interrupt = GracefulInterrupt()
    with interrupt.active():
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
