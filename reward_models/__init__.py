"""Rewards for textrl: the reward protocol, function rewards, learned reward models and shaping.

This package knows nothing of environments or agents: text in, numbers out.
"""

from reward_models.functions import (
    ExactMatchReward,
    LengthReward,
    RegexReward,
    SentimentReward,
    WeightedSumReward,
    leading_answer,
)
from reward_models.kl_control import (
    AdaptiveKLController,
    FixedKLController,
    KLController,
    make_kl_controller,
)
from reward_models.preferences import (
    PreferenceFileWarning,
    PreferencePair,
    append_preferences,
    read_preferences,
    write_preferences,
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
    "ExactMatchReward",
    "FixedKLController",
    "KLController",
    "LengthReward",
    "PreferenceFileWarning",
    "PreferencePair",
    "RegexReward",
    "RewardModel",
    "RunningMeanStd",
    "SentimentReward",
    "WeightedSumReward",
    "append_preferences",
    "compute_rewards",
    "kl_penalty",
    "leading_answer",
    "make_kl_controller",
    "missing_eos_penalty",
    "read_preferences",
    "shaped_rewards",
    "whiten",
    "write_preferences",
]
