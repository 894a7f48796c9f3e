"""Tuned hyperparameters per registered env and agent, as RL Zoo ships them.

One YAML file per agent (``rloo.yml``, ...) maps env ids to the settings that learn on the
embedded default model: ``total_timesteps``, ``num_envs``, ``policy``, and fields of the agent's config dataclass. ``textrl train ENV_ID --agent A`` starts from them;
flags and ``--config`` files override them. The library's own defaults (``learning_rate=1e-5``,
right for real models) are unchanged: the table is for the tiny default model's tasks.

Keys are the ``textrl train`` flag names, so an entry doubles as a ``--config`` file. Each entry is
covered by a learning test (``tests/agents/test_hyperparams.py``).

Example::

    from agents.hyperparams import tuned_hyperparams

    settings = tuned_hyperparams("textrl/Sentiment-v0", "rloo")
    # {'total_timesteps': 16000, 'num_envs': 32, 'policy': 'LMPolicy', 'learning_rate': 0.001, 'k': 4}
"""

from __future__ import annotations

import copy
import difflib
from functools import cache
from pathlib import Path
from typing import Any

HYPERPARAMS_DIR = Path(__file__).resolve().parent
# Keys of an entry that are not fields of the agent's config dataclass.
RUN_KEYS = ("total_timesteps", "num_envs", "policy")


def tuned_agents() -> list[str]:
    """The agents with a table (one ``<agent>.yml`` each)."""
    return sorted(path.stem for path in HYPERPARAMS_DIR.glob("*.yml"))


@cache
def _table(agent: str) -> dict[str, dict[str, Any]]:
    import yaml

    data = yaml.safe_load((HYPERPARAMS_DIR / f"{agent}.yml").read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{HYPERPARAMS_DIR / f'{agent}.yml'} must map env ids to mappings of settings")
    return data


def tuned_envs(agent: str) -> list[str]:
    """The env ids that ``agent``'s table has an entry for."""
    return sorted(_table(_check_agent(agent)))


def _check_agent(agent: str) -> str:
    agent = agent.lower()
    known = tuned_agents()
    if agent not in known:
        close = difflib.get_close_matches(agent, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"no tuned hyperparameters for agent {agent!r}; tables exist for {known}.{hint}")
    return agent


def tuned_hyperparams(env_id: str, agent: str) -> dict[str, Any]:
    """The tuned settings of ``agent`` on ``env_id`` (a fresh copy), or ``{}`` when there is no entry.

    Args:
        env_id: a registered id, e.g. ``"textrl/Sentiment-v0"``.
        agent: ``"reinforce"``, ``"rloo"``, ``"ppo"`` or ``"grpo"`` (case-insensitive).

    Returns:
        ``total_timesteps``, ``num_envs``, ``policy``, and config fields of
        the agent (``learning_rate``, ``k``, ...). Empty for an env without an entry: the library
        defaults then apply.

    Raises:
        ValueError: an agent without a table.
    """
    return copy.deepcopy(_table(_check_agent(agent)).get(env_id, {}))


__all__ = ["HYPERPARAMS_DIR", "RUN_KEYS", "tuned_agents", "tuned_envs", "tuned_hyperparams"]
