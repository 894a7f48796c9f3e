"""The quickstart example runs end to end with a tiny budget and leaves a loadable checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym

from agents import RLOO

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_smoke(tmp_path: Path, capsys) -> None:
    quickstart = load_example("quickstart")
    after = quickstart.main(["--timesteps", "64", "--num-envs", "8", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "before training" in out and "after training" in out and "Sample completions" in out
    assert len(after.completions) == 4 * 16
    assert (tmp_path / "progress.csv").exists()
    envs = gym.make_vec("textrl/Sentiment-v0", num_envs=8, vectorization_mode="vector_entry_point")
    resumed = RLOO.load(tmp_path / "rloo", env=envs, verbose=0)
    assert resumed.num_timesteps >= 64
