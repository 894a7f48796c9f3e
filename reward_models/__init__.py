"""Rewards for textrl: the reward protocol, function rewards, learned reward models and shaping.

This package knows nothing of environments or agents: text in, numbers out.
"""

from reward_models.errors import RewardError, RewardTypeError
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
from reward_models.learned import LearnedRewardModel
from reward_models.pairs import generate_preference_pairs
from reward_models.preferences import (
    PreferenceFileWarning,
    PreferencePair,
    append_preferences,
    read_preferences,
    write_preferences,
)
from reward_models.protocol import (
    ResolvedReward,
    RewardModel,
    SkippedRewards,
    compute_rewards,
    resolve_reward,
    score_skipping_errors,
)
from reward_models.shaping import (
    RunningMeanStd,
    kl_penalty,
    missing_eos_penalty,
    shaped_rewards,
    whiten,
)
from reward_models.training import (
    RewardTrainingConfig,
    RewardTrainingResult,
    evaluate_pairs,
    preference_loss,
    train_reward_model,
)

__all__ = [
    "AdaptiveKLController",
    "ExactMatchReward",
    "FixedKLController",
    "KLController",
    "LearnedRewardModel",
    "LengthReward",
    "PreferenceFileWarning",
    "PreferencePair",
    "RegexReward",
    "ResolvedReward",
    "RewardError",
    "RewardModel",
    "RewardTrainingConfig",
    "RewardTrainingResult",
    "RewardTypeError",
    "RunningMeanStd",
    "SentimentReward",
    "SkippedRewards",
    "WeightedSumReward",
    "append_preferences",
    "compute_rewards",
    "evaluate_pairs",
    "generate_preference_pairs",
    "kl_penalty",
    "leading_answer",
    "make_kl_controller",
    "missing_eos_penalty",
    "preference_loss",
    "read_preferences",
    "resolve_reward",
    "score_skipping_errors",
    "shaped_rewards",
    "train_reward_model",
    "whiten",
    "write_preferences",
]
