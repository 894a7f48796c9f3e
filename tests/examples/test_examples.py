"""Every example runs end to end with a tiny budget (quickstart's and custom_policy's own tests are elsewhere)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import gymnasium as gym

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_register_env(capsys) -> None:
    example = load("register_env")
    before, after = example.main(["--timesteps", "128", "--num-envs", "8"])
    assert math.isfinite(before) and math.isfinite(after)
    assert example.ENV_ID in gym.registry and example.ENV_ID in capsys.readouterr().out
    envs = gym.make_vec(example.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point")
    assert envs.unwrapped.reward_model is example.upbeat_and_brief


def test_train_agents(capsys) -> None:
    results = load("train_agents").main(["--timesteps", "64"])
    assert set(results) == {"reinforce", "rloo", "ppo"}
    assert all(math.isfinite(b) and math.isfinite(a) for b, a in results.values())
    out = capsys.readouterr().out
    assert all(name in out for name in ("reinforce", "rloo", "ppo"))


def test_property_test_shaping(capsys) -> None:
    example = load("property_test_shaping")
    example.main()
    assert "both shaping properties hold" in capsys.readouterr().out


def test_property_test_catches_a_broken_shaping(monkeypatch) -> None:
    # The example's properties can fail: a shaping that drops the score breaks the return.
    import pytest

    example = load("property_test_shaping")
    monkeypatch.setattr(example, "spread_score_shaping", lambda scores, kl, mask, c: -c * kl * mask)
    with pytest.raises(AssertionError):
        example.test_shaping_keeps_the_return()


def test_sb3_ppo(capsys) -> None:
    before, after = load("sb3_ppo").main(["--timesteps", "64", "--eval-episodes", "2"])
    assert math.isfinite(before) and math.isfinite(after)
    assert "SB3 PPO" in capsys.readouterr().out
