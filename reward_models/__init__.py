"""Rewards for textrl: the reward protocol, function rewards, learned reward models and shaping.

This package knows nothing of environments or agents: text in, numbers out.
"""

from reward_models.kl_control import (
    AdaptiveKLController,
    FixedKLController,
    KLController,
    make_kl_controller,
)
from reward_models.protocol import RewardModel, compute_rewards
from reward_models.shaping import (
    RunningMeanStd,
    kl_penalty,
    missing_eos_penalty,
    shaped_rewards,
    whiten,
)

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "KLController",
    "RewardModel",
    "RunningMeanStd",
    "compute_rewards",
    "kl_penalty",
    "make_kl_controller",
    "missing_eos_penalty",
    "shaped_rewards",
    "whiten",
]
