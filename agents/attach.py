"""How an agent attaches to an env: the one place agents configure the env they train on.

The seam, in a few lines (see also the README):

- **The env owns** the policy module it generates with (``env.model``, the very module the agent
  trains), the frozen KL reference, the KV cache, end-of-episode scoring (reward model, KL terms)
  and the KL coefficient it applies.
- **The policy provides** :class:`agents.policies.TextPolicy` (every method the agents and the
  env call, with shapes); a step-only policy gets the rest from the defaults.
- **An agent may change** three things, each through one env method: which logits the env measures
  log-probs with and which KL reference it uses (:meth:`~textrl_env.TextGenerationVectorEnv.attach_policy`,
  once, here), the KL coefficient (``env.set_kl_coef``, between rollouts), and autoreset while it
  collects one episode per row (``with env.without_autoreset(): ...``). Nothing else.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from torch import nn

from agents.policies import protocol
from agents.policies.base import check_policy_vocab
from textrl_env import TextGenerationEnv, TextGenerationVectorEnv


def as_vector_env(env: Any, n_envs: int, device: str) -> TextGenerationVectorEnv:
    """The native vector env behind ``env`` (an id string is made with ``n_envs`` rows)."""
    if isinstance(env, str):
        kwargs: dict[str, Any] = {} if device == "auto" else {"device": device}
        env = gym.make_vec(env, num_envs=n_envs, vectorization_mode="vector_entry_point", **kwargs)
    inner = getattr(env, "unwrapped", env)
    if isinstance(inner, TextGenerationVectorEnv):
        return inner
    hint = ""
    if isinstance(inner, TextGenerationEnv):
        hint = " (a single env was given: agents train on a batch)"
    raise TypeError(
        f"agents train on textrl's native vector env, got {type(env).__name__}{hint}; build one with "
        "gym.make_vec('textrl/Sentiment-v0', num_envs=16, vectorization_mode='vector_entry_point') "
        "or pass the env id string"
    )


def attach_policy(policy: nn.Module, env: TextGenerationVectorEnv) -> bool:
    """Check ``policy`` against ``env`` and attach it; returns True when the env's logits are the policy's.

    Raises:
        ValueError: the policy's vocabulary differs from the env's action space.
    """
    vocab = protocol.vocab_size(policy)
    if vocab is not None:
        check_policy_vocab(int(vocab), int(env.single_action_space.n))  # type: ignore[attr-defined]
    env_logits = protocol.samples_from(policy, env.model, env.temperature)
    env.attach_policy(
        logits_source="env" if env_logits else "policy", reference=protocol.reference_model(policy)
    )
    return env_logits
