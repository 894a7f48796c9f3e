"""Policies: the seam between an algorithm and the network, with Stable-Baselines3's verbs on token tensors.

- :mod:`agents.policies.protocol`: what the agents and the env call on a policy (:class:`TextPolicy`,
  with shapes), aliases and :func:`resolve_policy`;
- :mod:`agents.policies.base`: :class:`BasePolicy` and the observation helpers;
- :mod:`agents.policies.lm`: the causal-LM policies :class:`LMPolicy` and :class:`LMActorCriticPolicy`.
"""

from agents.policies.base import (
    BasePolicy,
    Obs,
    check_policy_vocab,
    obs_to_tensors,
    right_align,
    sample_from_logits,
    stepwise_evaluate_sequence,
)
from agents.policies.lm import LMActorCriticPolicy, LMPolicy
from agents.policies.protocol import (
    POLICY_ALIASES,
    PROTOCOL_METHODS,
    StepPolicy,
    TextPolicy,
    has_values,
    resolve_policy,
)

__all__ = [
    "POLICY_ALIASES",
    "PROTOCOL_METHODS",
    "BasePolicy",
    "LMActorCriticPolicy",
    "LMPolicy",
    "Obs",
    "StepPolicy",
    "TextPolicy",
    "check_policy_vocab",
    "has_values",
    "obs_to_tensors",
    "resolve_policy",
    "right_align",
    "sample_from_logits",
    "stepwise_evaluate_sequence",
]
