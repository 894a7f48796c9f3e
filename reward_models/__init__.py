"""Rewards for textrl: the reward protocol, function rewards, learned reward models and shaping.

This package knows nothing of environments or agents: text in, numbers out.
"""

from reward_models.protocol import RewardModel, compute_rewards
from reward_models.shaping import kl_penalty

__all__ = ["RewardModel", "compute_rewards", "kl_penalty"]
