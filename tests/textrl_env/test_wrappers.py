"""Gymnasium's own vector wrappers on the native vector env, through the NumPy view (TorchToNumpy)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers.vector import ClipReward, NormalizeReward, RecordEpisodeStatistics

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from textrl_env.wrappers import TorchToNumpy, to_numpy

NUM_ENVS = 4
MAX_NEW_TOKENS = 5


@pytest.fixture(scope="module")
def native() -> gym.vector.VectorEnv:
    return gym.make_vec(
        "textrl/Sentiment-v0", num_envs=NUM_ENVS, vectorization_mode="vector_entry_point",
        max_new_tokens=MAX_NEW_TOKENS,
    )  # fmt: skip


def test_gymnasiums_wrappers_need_the_numpy_view(native: gym.vector.VectorEnv) -> None:
    # The report: the native env's torch rewards and dones break the wrapper's NumPy arithmetic.
    envs = RecordEpisodeStatistics(native)
    envs.reset(seed=0)
    with pytest.raises(TypeError):
        for _ in range(MAX_NEW_TOKENS + 1):
            envs.step(envs.action_space.sample())


def test_record_episode_statistics(native: gym.vector.VectorEnv) -> None:
    envs = RecordEpisodeStatistics(TorchToNumpy(native))
    obs, info = envs.reset(seed=0)
    assert obs["input_ids"].dtype == np.int64 and obs["input_ids"].shape == (
        NUM_ENVS,
        native.unwrapped.core.seq_length,
    )
    assert len(info["prompt"]) == NUM_ENVS and set(info["prompt"]) <= set(native.unwrapped.prompts)
    envs.action_space.seed(0)
    total = np.zeros(NUM_ENVS)
    for _ in range(MAX_NEW_TOKENS):
        _, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert isinstance(rewards, np.ndarray) and rewards.dtype == np.float32
        assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
        total += rewards
        if "episode" in info:
            break
    assert "episode" in info, "no row finished within max_new_tokens"
    done = info["_episode"]
    assert done.any()
    np.testing.assert_allclose(info["episode"]["r"][done], total[done], rtol=1e-5)
    assert (info["episode"]["l"][done] >= 1).all() and (info["episode"]["l"][done] <= MAX_NEW_TOKENS).all()
    assert isinstance(info["score"], np.ndarray) and info["kl"].shape == (NUM_ENVS, MAX_NEW_TOKENS)
    assert list(info["completion"][done]) and all(isinstance(c, str) for c in info["completion"])


def test_normalize_and_clip_reward(native: gym.vector.VectorEnv) -> None:
    envs = ClipReward(NormalizeReward(TorchToNumpy(native)), min_reward=-0.1, max_reward=0.1)
    envs.reset(seed=1)
    envs.action_space.seed(1)
    seen = []
    for _ in range(3 * MAX_NEW_TOKENS):
        _, rewards, *_ = envs.step(envs.action_space.sample())
        seen.append(rewards)
    rewards = np.concatenate(seen)
    assert np.isfinite(rewards).all() and (np.abs(rewards) <= 0.1 + 1e-7).all()
    assert (rewards != 0).any()  # episodes ended and were scored
    assert envs.env.return_rms.count > 1  # NormalizeReward's running statistics were updated


def test_the_native_env_keeps_its_tensors(native: gym.vector.VectorEnv) -> None:
    # The wrapper is a view: the env agents train on still returns device tensors.
    TorchToNumpy(native).reset(seed=0)
    obs, rewards, terminated, *_ = native.step(torch.zeros(NUM_ENVS, dtype=torch.long) + 5)
    assert isinstance(obs["input_ids"], torch.Tensor) and isinstance(rewards, torch.Tensor)
    assert isinstance(terminated, torch.Tensor)


def test_to_numpy_converts_nested_tensors_and_leaves_the_rest() -> None:
    value = {
        "a": torch.ones(2, dtype=torch.bfloat16),
        "b": [torch.tensor([1, 2])],
        "c": np.array(["x"], dtype=object),
    }
    out = to_numpy(value)
    assert out["a"].dtype == np.float32 and out["a"].tolist() == [1.0, 1.0]
    assert isinstance(out["b"], list) and out["b"][0].tolist() == [1, 2]
    assert out["c"] is value["c"]
