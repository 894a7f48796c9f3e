"""Saving and loading a whole agent: what :meth:`BaseAlgorithm.save` / ``load`` write and read.

The directory format itself is :mod:`agents.checkpoint`'s; this module decides what of an agent
goes into it (policy, optimizer, KL controller, RNG streams, counters, the algorithm's extra state)
and how a checkpoint of an older format maps onto today's config names.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from agents.checkpoint import CheckpointError, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from agents.config import upgrade_config
from agents.policies import POLICY_ALIASES
from agents.rng import RNGStateError
from agents.update_steps import load_optimizer_state

if TYPE_CHECKING:
    from agents.base import BaseAlgorithm


def is_builtin_policy(policy_class: type) -> bool:
    """Whether the policy class is a built-in alias (so a checkpoint can name it)."""
    return POLICY_ALIASES.get(policy_class.__name__) is policy_class


def save_agent(
    agent: BaseAlgorithm,
    path: str | os.PathLike,
    optimizer_state: dict[str, Any] | None = None,
    policy_state: dict[str, Any] | None = None,
) -> None:
    """Write ``agent``'s checkpoint directory (atomically).

    ``optimizer_state`` and ``policy_state`` replace ``agent.optimizer.state_dict()`` and
    ``agent.policy.state_dict()`` when those hold shards (FSDP; see :meth:`DataParallel.save`).
    """
    policy = agent.policy_class.__name__ if is_builtin_policy(agent.policy_class) else None
    save_checkpoint(
        path,
        algo_name=agent.algo_name,
        policy=agent.policy,
        optimizer=agent.optimizer if optimizer_state is None else optimizer_state,
        kl_controller_state=agent.kl_controller.state_dict(),
        rng_states=get_rng_state(agent._named_generators()),
        counters={"num_timesteps": agent.num_timesteps, "iteration": agent.iteration},
        config={
            "algo": dataclasses.asdict(agent.config),
            "policy": policy,
            "policy_kwargs": agent.policy_kwargs,
        },
        extra=agent._extra_state(),
        policy_state=policy_state,
    )


def load_agent(
    cls: type[BaseAlgorithm],
    path: str | os.PathLike,
    env: Any,
    device: str = "auto",
    policy: str | type | None = None,
    **kwargs: Any,
) -> BaseAlgorithm:
    """Rebuild an agent of class ``cls`` from :func:`save_agent`'s checkpoint (see :meth:`BaseAlgorithm.load`)."""
    checkpoint = load_checkpoint(path, expected_algo=cls.algo_name)
    saved = checkpoint.config
    policy = policy or saved.get("policy")
    if policy is None:
        raise ValueError(
            f"{path} was saved with a custom policy class; pass it again: {cls.__name__}.load(path, env, policy=MyPolicy)"
        )
    kwargs.setdefault("policy_kwargs", saved.get("policy_kwargs") or None)
    algo = upgrade_config(saved["algo"], int(checkpoint.meta.get("format_version", 1)))
    agent = cls(policy, env, device=device, **{**algo, **kwargs})
    checkpoint.load_policy(agent.policy)
    if checkpoint.optimizer_state is not None:
        load_optimizer_state(agent.optimizer, checkpoint.optimizer_state)
    if checkpoint.kl_controller_state is not None:
        agent.kl_controller.load_state_dict(checkpoint.kl_controller_state)
        agent.env.set_kl_coef(agent.kl_controller.value)
    agent._load_extra_state(checkpoint.extra)
    try:
        set_rng_state(checkpoint.rng_states, agent._named_generators())
    except RNGStateError as err:
        raise CheckpointError(f"{path}: {err}; re-save the checkpoint with {cls.__name__}.save") from err
    agent.num_timesteps = int(checkpoint.counters["num_timesteps"])
    agent.iteration = int(checkpoint.counters["iteration"])
    return agent
