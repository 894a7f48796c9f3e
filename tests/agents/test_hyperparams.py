"""Every tuned-table entry learns: ``textrl train ENV_ID --agent A`` with no other flag raises the held-out score.

Each entry of ``agents/hyperparams/*.yml`` runs through the command exactly as a user types it (in
a fresh working directory, so the default run directory is used), and the held-out score it writes
to ``train.json`` must rise by at least 0.3 (VADER on Sentiment-v0, the learned reward on
Preference-v0). Seconds each on CPU; marked slow like tests/agents/test_learning.py, and run in CI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agents.cli import main
from agents.hyperparams import tuned_agents, tuned_envs, tuned_hyperparams
from agents.train import ALGORITHMS

ENTRIES = [(env_id, agent) for agent in tuned_agents() for env_id in tuned_envs(agent)]


def test_the_table_has_every_agent_on_sentiment_and_valid_settings() -> None:
    assert {agent for env_id, agent in ENTRIES if env_id == "textrl/Sentiment-v0"} == set(ALGORITHMS)
    for env_id, agent in ENTRIES:
        settings = tuned_hyperparams(env_id, agent)
        config = {k: v for k, v in settings.items() if k not in ("total_timesteps", "num_envs", "policy")}
        ALGORITHMS[agent].config_class(**config)  # every key is a field, every value valid
        assert settings["total_timesteps"] <= 20_000  # CI time


def test_lookup_errors_and_copies() -> None:
    assert tuned_hyperparams("textrl/TextGeneration-v0", "rloo") == {}
    with pytest.raises(ValueError, match="Did you mean 'rloo'"):
        tuned_hyperparams("textrl/Sentiment-v0", "rlo")
    tuned_hyperparams("textrl/Sentiment-v0", "rloo")["k"] = 99
    assert tuned_hyperparams("textrl/Sentiment-v0", "rloo")["k"] != 99


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "agent"), ENTRIES)
def test_train_with_no_flags_raises_the_heldout_score(
    env_id: str, agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", env_id, "--agent", agent]) == 0
    (summary_file,) = tmp_path.glob("runs/*/train.json")
    summary = json.loads(summary_file.read_text())
    before, after = summary["before"]["reward_mean"], summary["after"]["reward_mean"]
    print(f"\n{agent} on {env_id}: held-out {before:+.3f} -> {after:+.3f} in {summary['seconds']:.1f} s")
    assert summary["config"]["learning_rate"] == tuned_hyperparams(env_id, agent)["learning_rate"]
    assert math.isfinite(summary["after"]["kl_mean"])
    assert after >= before + 0.3, (
        f"{agent} on {env_id} moved the held-out score only from {before:.3f} to {after:.3f}"
    )
