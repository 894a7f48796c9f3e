"""The policy protocol: every method an algorithm or the env calls on a policy, with shapes.

Shapes: ``B`` rows, ``L`` columns of an observation (the prompt window ``P`` plus the response
slots ``T``), ``V`` the vocabulary, ``T`` response columns of a finished episode.

A policy is either a subclass of :class:`~agents.policies.BasePolicy` (which implements all of
:class:`TextPolicy` given ``forward``, and is what the built-in policies are), or any ``nn.Module``
with the four per-step verbs of :class:`StepPolicy`. For the latter, the agents fill in the rest
exactly as :class:`~agents.policies.BasePolicy` would (the functions below):
whole responses are measured one ``evaluate_actions`` call per column, the env is handed the
policy's logits every step, and the env's frozen copy stays the KL reference. Nothing on the
agent/env path asks a policy which methods it has.
"""

from __future__ import annotations

import difflib
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from agents.policies.base import BasePolicy, Obs, obs_to_tensors, stepwise_evaluate_sequence
from agents.policies.lm import LMActorCriticPolicy, LMPolicy

PROTOCOL_METHODS = ("forward", "act", "evaluate_actions", "predict_values")


@runtime_checkable
class StepPolicy(Protocol):
    """What any policy must provide: Stable-Baselines3's verbs on token observations.

    Built by an algorithm as ``policy(env.model, tokenizer=env.tokenizer, temperature=env.temperature,
    **policy_kwargs)``; ``temperature`` is the one the env samples and measures log-probs at.
    """

    temperature: float

    def forward(self, obs: Obs) -> torch.Tensor:
        """Raw next-token logits ``(B, V)`` at each row's last real column (not temperature-scaled)."""
        ...

    def act(self, obs: Obs, deterministic: bool = False) -> torch.Tensor:
        """Next tokens ``(B,)``, no grad."""
        ...

    def evaluate_actions(
        self, obs: Obs, actions: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(values (B,) | None, log_prob (B,), entropy (B,))`` of ``actions`` (with grad)."""
        ...

    def predict_values(self, obs: Obs) -> torch.Tensor | None:
        """State values ``(B,)``, or None without a critic."""
        ...


class TextPolicy(StepPolicy, Protocol):
    """The full protocol the agents and env use; :class:`~agents.policies.BasePolicy` implements it.

    ``T`` below is ``input_ids.shape[1] - response_start``; every ``(B, T)`` result is 0 where
    ``attention_mask[:, response_start:]`` is 0.
    """

    def evaluate_sequence(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(values (B, T) | None, logprobs (B, T), entropy (B, T))`` of a whole response, with grad
        (an update's forward). ``input_ids`` / ``attention_mask`` are ``(B, P + T)``."""
        ...

    def sequence_values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> torch.Tensor | None:
        """``(B, T)`` values of the state before each response token (PPO's rollout values), or None."""
        ...

    @property
    def has_values(self) -> bool:
        """Whether the policy has a critic (PPO and ``baseline="learned"`` need one)."""
        ...

    @property
    def vocab_size(self) -> int | None:
        """Logits per token (checked against the env's ``Discrete(V)``), or None when unknown."""
        ...

    def samples_from(self, model: nn.Module) -> bool:
        """Whether the policy's logits are exactly ``model``'s, so the env's own forward samples for it."""
        ...

    def reference_model(self) -> nn.Module | None:
        """A KL reference the policy carries (LoRA: the adapter switched off), or None for the env's copy."""
        ...


# ---------------------------------------------------------------------- the protocol for any policy


def evaluate_sequence(
    policy: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """:meth:`TextPolicy.evaluate_sequence` of any policy (a step-only one: column by column)."""
    if isinstance(policy, BasePolicy):
        return policy.evaluate_sequence(input_ids, attention_mask, response_start)
    return stepwise_evaluate_sequence(policy, input_ids, attention_mask, response_start)


def sequence_values(
    policy: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
) -> torch.Tensor | None:
    """:meth:`TextPolicy.sequence_values` of any policy."""
    if isinstance(policy, BasePolicy):
        return policy.sequence_values(input_ids, attention_mask, response_start)
    return stepwise_evaluate_sequence(policy, input_ids, attention_mask, response_start)[0]


def has_values(policy: Any) -> bool:
    """False for a policy known to have no critic; a step-only policy is checked when values come back."""
    return policy.has_values if isinstance(policy, BasePolicy) else True


def vocab_size(policy: Any) -> int | None:
    """The policy's logits per token when it says (a step-only policy's are checked at the first step)."""
    return policy.vocab_size if isinstance(policy, BasePolicy) else None


def samples_from(policy: Any, model: nn.Module, temperature: float) -> bool:
    """Whether an env generating with ``model`` at ``temperature`` can sample for ``policy``."""
    return isinstance(policy, BasePolicy) and policy.temperature == temperature and policy.samples_from(model)


def reference_model(policy: Any) -> nn.Module | None:
    """The KL reference the policy carries, or None to keep the env's frozen copy."""
    return policy.reference_model() if isinstance(policy, BasePolicy) else None


def predict(policy: Any, obs: Obs, deterministic: bool = False) -> tuple[np.ndarray, None]:
    """Stable-Baselines3's ``predict`` through ``act``: shape ``()`` for one observation, ``(B,)`` batched."""
    _, _, batched = obs_to_tensors(obs)
    actions = policy.act(obs, deterministic=deterministic).cpu().numpy()
    return (actions if batched else actions[0]), None


# ---------------------------------------------------------------------- aliases


POLICY_ALIASES: dict[str, type[nn.Module]] = {
    "LMPolicy": LMPolicy,
    "LMActorCriticPolicy": LMActorCriticPolicy,
}


def resolve_policy(policy: str | type) -> type:
    """Turn an alias (``"LMPolicy"``) or a class into a policy class.

    A class is accepted when it subclasses :class:`BasePolicy` or has every :class:`StepPolicy`
    method (``forward``, ``act``, ``evaluate_actions``, ``predict_values``).

    Raises:
        ValueError: an unknown alias (with the closest known one).
        TypeError: a class missing protocol methods (listed), or neither a string nor a class.
    """
    if isinstance(policy, str):
        if policy in POLICY_ALIASES:
            return POLICY_ALIASES[policy]
        close = difflib.get_close_matches(policy, list(POLICY_ALIASES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown policy alias {policy!r}.{hint} Known aliases: {', '.join(POLICY_ALIASES)}; "
            "or pass a policy class"
        )
    if not isinstance(policy, type):
        raise TypeError(
            f"policy must be an alias ({', '.join(POLICY_ALIASES)}) or a policy class, got {type(policy).__name__}; "
            "pass the class itself and its arguments through policy_kwargs"
        )
    if issubclass(policy, BasePolicy):
        return policy
    # The one check of a step-only class against StepPolicy, when it is resolved; nothing after
    # this asks a policy what it has.
    policy_class = policy
    missing = [
        name
        for name in PROTOCOL_METHODS
        if not callable(getattr(policy_class, name, None))
        or getattr(policy_class, name) is getattr(nn.Module, name, None)
    ]
    if missing:
        raise TypeError(
            f"policy class {policy_class.__name__} does not meet the textrl policy protocol: missing "
            f"{', '.join(missing)}. Subclass agents.policies.BasePolicy (it provides act, evaluate_actions and "
            "predict_values given forward) or define the missing methods"
        )
    return policy
