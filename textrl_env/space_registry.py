"""Which environment created an observation space, so an adapter given only the space can find its model.

Stable-Baselines3 builds a policy from ``(observation_space, action_space, lr_schedule, **policy_kwargs)``
alone. For ``stable_baselines3.PPO(TextRLSB3Policy, env)`` to train the env's own language model (so
the env's KL penalty is measured against the model being trained), the policy must get from the space
to the env. SB3 and Gymnasium's wrappers hand the env's space object through unchanged, so each
:class:`~textrl_env.TextGenerationEnv` registers its observation space here.

The registry is weak on both sides: it keeps neither the space nor the env alive, and an entry
vanishes when its space is garbage collected. Lookups are by identity, never by equality: two envs with
equal spaces may hold different models, and a copy of a space (e.g. one unpickled by ``PPO.load``)
belongs to no env.
"""

from __future__ import annotations

import weakref
from typing import Any

from gymnasium import spaces

# id(space) -> (weak ref to the space, weak ref to the env that made it)
_REGISTRY: dict[int, tuple[weakref.ref, weakref.ref]] = {}


def register_space(space: spaces.Space, env: Any) -> None:
    """Record that ``env`` created ``space`` (called by the env's constructor).

    Args:
        space: the env's observation space object.
        env: the env; it must have ``model`` (the policy LM) and ``temperature`` attributes.
    """
    key = id(space)

    def _forget(ref: weakref.ref) -> None:
        # Only drop our own entry: the id may already belong to a newer space.
        entry = _REGISTRY.get(key)
        if entry is not None and entry[0] is ref:
            del _REGISTRY[key]

    _REGISTRY[key] = (weakref.ref(space, _forget), weakref.ref(env))


def env_for_space(space: spaces.Space) -> Any | None:
    """The live env that created this very space object, or None."""
    entry = _REGISTRY.get(id(space))
    if entry is None or entry[0]() is not space:
        return None
    return entry[1]()


def model_for_space(space: spaces.Space) -> Any | None:
    """The policy model of the env that created this very space object, or None."""
    env = env_for_space(space)
    return None if env is None else env.model


def registered_models() -> list[Any]:
    """The models of every live registered env (to tell whether a given module belongs to an env)."""
    envs = (entry[1]() for entry in list(_REGISTRY.values()))
    return [env.model for env in envs if env is not None]
