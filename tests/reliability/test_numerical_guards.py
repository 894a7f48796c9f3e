"""Numerical guards: a NaN/inf loss or gradient never reaches the weights; clipping on by default; target_kl logged."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import agents.reinforce as reinforce_module
from agents import PPO, REINFORCE
from agents.config import AlgoConfig
from agents.guards import NonFiniteError
from tests.agents.test_ppo import make_env


def weights(agent: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in agent.policy.state_dict().items()}


def nan_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    real = reinforce_module.clipped_policy_loss

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        loss, stats = real(*args, **kwargs)
        return loss * math.nan, stats

    monkeypatch.setattr(reinforce_module, "clipped_policy_loss", poisoned)


def read_progress(folder: Path) -> list[dict[str, str]]:
    with open(folder / "progress.csv") as f:
        return list(csv.DictReader(f))


def test_a_nan_loss_stops_with_the_iteration_and_the_statistic_named(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = REINFORCE("LMPolicy", make_env(), seed=0, verbose=0)
    before = weights(agent)
    nan_loss(monkeypatch)
    with pytest.raises(
        NonFiniteError, match=r"REINFORCE iteration 1: train/loss is nan .*on_nonfinite='skip'"
    ):
        agent.learn(16)
    for name, value in weights(agent).items():
        torch.testing.assert_close(value, before[name])  # the NaN never reached the weights


def test_an_infinite_gradient_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = REINFORCE("LMPolicy", make_env(), seed=0, verbose=0)
    param = next(p for p in agent.policy.parameters() if p.requires_grad)
    param.register_hook(lambda grad: grad * math.inf)
    with pytest.raises(NonFiniteError, match=r"iteration 1: train/grad_norm is (inf|nan)"):
        agent.learn(16)


def test_on_nonfinite_skip_drops_the_step_and_counts_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    agent = REINFORCE(
        "LMPolicy", make_env(), seed=0, verbose=0, on_nonfinite="skip", tensorboard_log=tmp_path
    )
    before = weights(agent)
    nan_loss(monkeypatch)
    agent.learn(32)
    assert agent.iteration >= 2
    for name, value in weights(agent).items():
        torch.testing.assert_close(value, before[name])
    skips = [float(r["train/nonfinite_skips"]) for r in read_progress(tmp_path)]
    assert skips and all(s >= 1 for s in skips)


def test_gradient_clipping_is_on_by_default() -> None:
    assert AlgoConfig().max_grad_norm == 1.0
    agent = REINFORCE("LMPolicy", make_env(), seed=0, verbose=0, learning_rate=1e-3)
    seen: list[float] = []
    step = agent.optimizer.step

    def spy(*args: Any, **kwargs: Any) -> Any:
        grads = [p.grad for g in agent.optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append(
            float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        )
        return step(*args, **kwargs)

    agent.optimizer.step = spy  # type: ignore[method-assign]
    # A large loss scale makes the raw gradient norm far above 1.
    real = reinforce_module.clipped_policy_loss
    reinforce_module.clipped_policy_loss = lambda *a, **k: (lambda out: (out[0] * 1e4, out[1]))(real(*a, **k))
    try:
        agent.learn(16)
    finally:
        reinforce_module.clipped_policy_loss = real
    assert seen and max(seen) <= 1.0 + 1e-4


def test_target_kl_early_stop_is_logged_through_learn(tmp_path: Path) -> None:
    agent = PPO(
        "LMActorCriticPolicy", make_env(num_envs=4), n_epochs=4, minibatch_size=2, target_kl=1e-6,
        learning_rate=1e-2, seed=0, verbose=0, tensorboard_log=tmp_path,
    )  # fmt: skip
    agent.learn(32)
    rows = read_progress(tmp_path)
    assert any(float(r["train/stopped_early"]) == 1.0 for r in rows)
    assert all(float(r["train/n_updates"]) < 8 for r in rows if float(r["train/stopped_early"]) == 1.0)
