"""Every registered textrl/* id: both env checkers, and the native vector env against "sync"."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import textrl_env  # noqa: F401  (registers the ids)
from reward_models import SentimentReward
from tests.textrl_env.test_vector_env import assert_same_step
from textrl_env.default_model import DEFAULT_MODEL_PATH

# textrl/TextGeneration-v0 is the generic env: model, prompts and reward come in as kwargs.
ID_KWARGS: dict[str, dict] = {
    "textrl/Sentiment-v0": {},
    "textrl/Arithmetic-v0": {},
    "textrl/Preference-v0": {},
    "textrl/TextGeneration-v0": {
        "model": str(DEFAULT_MODEL_PATH),
        "prompts": ["the plot was", "i thought the film"],
        "reward_model": SentimentReward(),
        "max_new_tokens": 8,
    },
}
TEXTRL_IDS = sorted(k for k in gym.registry if k.startswith("textrl/"))


def test_every_registered_id_is_covered() -> None:
    assert set(ID_KWARGS) == set(TEXTRL_IDS)


@pytest.mark.parametrize("env_id", sorted(ID_KWARGS))
def test_env_checkers_pass_without_warnings(env_id: str) -> None:
    env = gym.make(env_id, **ID_KWARGS[env_id])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
        sb3_check_env(env)
    ours = [w for w in caught if not issubclass(w.category, DeprecationWarning | FutureWarning)]
    assert not ours, [str(w.message) for w in ours]


@pytest.mark.parametrize("env_id", sorted(ID_KWARGS))
def test_vector_entry_point_matches_sync(env_id: str) -> None:
    kwargs = ID_KWARGS[env_id]
    n = 8
    native = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", **kwargs)
    assert native.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"]
    o1, _ = sync.reset(seed=11)
    o2, _ = native.reset(seed=11)
    np.testing.assert_array_equal(o1["input_ids"], o2["input_ids"].cpu().numpy())
    rng = np.random.default_rng(0)
    eos = native.unwrapped.eos_token_id
    vocab = native.unwrapped.single_action_space.n
    for step in range(40):
        actions = rng.integers(0, vocab, size=n)
        actions[rng.random(n) < 0.15] = eos
        assert_same_step(sync.step(actions), native.step(torch.as_tensor(actions)), step)


def test_default_model_loads_through_from_pretrained() -> None:
    env = gym.make("textrl/Sentiment-v0")
    assert env.unwrapped.model.name_or_path == str(DEFAULT_MODEL_PATH)
    assert env.unwrapped.pad_token_id != env.unwrapped.eos_token_id


def test_generic_env_needs_its_kwargs() -> None:
    with pytest.raises((TypeError, ValueError), match="prompts"):
        gym.make("textrl/TextGeneration-v0", model=str(DEFAULT_MODEL_PATH))
