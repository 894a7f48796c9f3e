"""textrl agents: REINFORCE, RLOO, PPO and GRPO on text-generation envs, with Stable-Baselines3's conventions.

Example::

    import gymnasium as gym
    import textrl_env
    from agents import RLOO

    envs = gym.make_vec("textrl/Sentiment-v0", num_envs=16, vectorization_mode="vector_entry_point")
    agent = RLOO("LMPolicy", envs, learning_rate=1e-5, k=4)
    agent.learn(total_timesteps=50_000, progress_bar=True)
    agent.save("runs/rloo")
"""

from agents.advantages import MovingAverageBaseline, discounted_returns, gae, rloo_advantages, rloo_baseline
from agents.base import BaseAlgorithm
from agents.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.config import AlgoConfig
from agents.grpo import GRPO, GRPOConfig
from agents.logger import Logger
from agents.losses import clipped_policy_loss, clipped_value_loss, masked_mean
from agents.policies import (
    POLICY_ALIASES,
    BasePolicy,
    LMActorCriticPolicy,
    LMPolicy,
    StepPolicy,
    TextPolicy,
    resolve_policy,
)
from agents.ppo import PPO, PPOConfig
from agents.reinforce import REINFORCE, REINFORCEConfig
from agents.rewards import SequenceRewards
from agents.rloo import RLOO, RLOOConfig
from agents.rollout import mask_after_eos
from agents.sampling import Evaluation
from agents.sb3 import TextRLSB3Policy

__all__ = [
    "GRPO",
    "POLICY_ALIASES",
    "PPO",
    "REINFORCE",
    "RLOO",
    "AlgoConfig",
    "BaseAlgorithm",
    "BaseCallback",
    "BasePolicy",
    "CallbackList",
    "CheckpointError",
    "Evaluation",
    "GRPOConfig",
    "LMActorCriticPolicy",
    "LMPolicy",
    "Logger",
    "MovingAverageBaseline",
    "PPOConfig",
    "ProgressBarCallback",
    "REINFORCEConfig",
    "RLOOConfig",
    "SequenceRewards",
    "StepPolicy",
    "TextPolicy",
    "TextRLSB3Policy",
    "clipped_policy_loss",
    "clipped_value_loss",
    "discounted_returns",
    "gae",
    "load_checkpoint",
    "mask_after_eos",
    "masked_mean",
    "resolve_policy",
    "rloo_advantages",
    "rloo_baseline",
    "save_checkpoint",
]
