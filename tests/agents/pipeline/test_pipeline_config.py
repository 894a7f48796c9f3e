"""PipelineConfig: validation naming the value and the fix, resolution from the tuned table, resume checks."""

from __future__ import annotations

import dataclasses

import pytest

from agents.pipeline.config import (
    PipelineConfig,
    agent_settings,
    config_differences,
    resolve_config,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 0}, "rounds must be an int >= 1"),
        ({"agent": "rlo"}, "Did you mean 'rloo'"),
        ({"labeler": "simulate"}, "Did you mean 'simulated'"),
        ({"label_temperature": 0.0}, "label_temperature must be a finite number > 0"),
        ({"rm_eval_fraction": 1.0}, "rm_eval_fraction must be in (0, 1)"),
        ({"kl_coef": -1.0}, "kl_coef must be a finite number >= 0"),
        ({"num_envs": 0}, "num_envs must be None or an int >= 1"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PipelineConfig(**kwargs)


def test_from_dict_refuses_unknown_keys_with_the_closest_name() -> None:
    with pytest.raises(ValueError, match="'round' is not a pipeline setting. Did you mean 'rounds'"):
        PipelineConfig.from_dict({"round": 2})
    assert PipelineConfig.from_dict({"rounds": 2}).rounds == 2


def test_every_field_has_help_text() -> None:
    assert all(f.metadata.get("help") for f in dataclasses.fields(PipelineConfig))


def test_resolve_fills_the_tuned_table_on_the_default_model() -> None:
    from agents.hyperparams import tuned_hyperparams

    tuned = tuned_hyperparams("textrl/Sentiment-v0", "rloo")
    resolved = resolve_config(PipelineConfig())
    assert resolved.learning_rate == tuned["learning_rate"] and resolved.num_envs == tuned["num_envs"]
    assert resolved.threads == 1
    mine = resolve_config(PipelineConfig(learning_rate=3e-4, num_envs=8))
    assert (mine.learning_rate, mine.num_envs) == (3e-4, 8)
    # A model of the user's: library defaults, not the table tuned for the tiny embedded model.
    hub = resolve_config(PipelineConfig(model="some/model"))
    assert hub.learning_rate == 1e-5 and hub.threads is None


def test_agent_settings_pass_the_kl_settings_and_the_tuned_extras() -> None:
    policy, kwargs = agent_settings(resolve_config(PipelineConfig(kl_coef=0.2, kl_target=3.0, kl_horizon=64)))
    assert policy == "LMPolicy"
    assert kwargs["kl_coef"] == 0.2 and kwargs["kl_target"] == 3.0 and kwargs["k"] == 4
    assert kwargs["kl_horizon"] == 64
    ppo_policy, ppo = agent_settings(resolve_config(PipelineConfig(agent="ppo")))
    assert ppo_policy == "LMActorCriticPolicy" and ppo["minibatch_size"] == 16


def test_config_differences_allow_more_rounds_and_another_spelling_of_run_dir() -> None:
    stored = PipelineConfig(run_dir="runs/a", rounds=2)
    assert config_differences(stored, {"run_dir": "runs/a/", "rounds": 3, "seed": 0}) == []
    differences = config_differences(stored, {"rounds": 1, "seed": 5})
    assert differences == ["rounds: 2 (the run) vs 1 (given)", "seed: 0 (the run) vs 5 (given)"]
