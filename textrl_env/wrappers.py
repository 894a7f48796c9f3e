"""A NumPy view of the native vector env, for Gymnasium's own vector wrappers.

:class:`~textrl_env.TextGenerationVectorEnv` returns torch tensors on the model's device (the
agents' fast path: no copies to the host). Gymnasium's vector wrappers
(``gymnasium.wrappers.vector.RecordEpisodeStatistics``, ``NormalizeReward``, ``ClipReward``, ...)
do NumPy arithmetic on rewards and dones, so put :class:`TorchToNumpy` between them::

    import gymnasium as gym
    import textrl_env
    from textrl_env.wrappers import TorchToNumpy

    envs = gym.make_vec("textrl/Sentiment-v0", num_envs=4, vectorization_mode="vector_entry_point")
    envs = gym.wrappers.vector.RecordEpisodeStatistics(TorchToNumpy(envs))

Gymnasium 1.x ships the opposite conversion (``NumpyToTorch``) and a general ``ArrayConversion``
that needs the optional ``array-api-compat`` package and cannot convert the env's text ``info``
entries (``prompt``, ``completion``, NumPy object arrays); this wrapper needs neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv, VectorWrapper


def to_numpy(value: Any) -> Any:
    """Tensors (in dicts, lists and tuples too) as NumPy arrays on the host; anything else unchanged.

    bfloat16 tensors become float32 (NumPy has no bfloat16).
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return tensor.cpu().numpy()
    if isinstance(value, Mapping):
        return {key: to_numpy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_numpy(item) for item in value)
    return value


class TorchToNumpy(VectorWrapper):
    """Returns the wrapped vector env's observations, rewards, dones and infos as NumPy arrays.

    Observations become int64 arrays ``(num_envs, P + T)``, rewards float32 ``(num_envs,)``,
    terminated/truncated bool ``(num_envs,)``; every tensor in ``info`` is copied to the host the
    same way. Actions may be NumPy arrays, lists or tensors: the env moves them to its device.
    Spaces, ``autoreset_mode`` and ``reset(options=...)`` pass through unchanged.

    Each step copies the batch to the host, so use it for Gymnasium tooling; agents built on the
    env use the unwrapped tensors.

    Args:
        env: a vector env returning torch tensors, e.g. ``TextGenerationVectorEnv``.
    """

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the wrapped env; observation and info as NumPy."""
        env: Any = self.env  # vector envs take a seed per row too, though VectorEnv types only an int
        obs, info = env.reset(seed=seed, options=options)
        return to_numpy(obs), to_numpy(info)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step the wrapped env; everything it returns as NumPy."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        return (
            to_numpy(obs),
            to_numpy(rewards),
            to_numpy(terminated),
            to_numpy(truncated),
            to_numpy(info),
        )
