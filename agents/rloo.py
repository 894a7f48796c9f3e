"""RLOO: REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024, "Back to Basics").

Each prompt is sampled ``k`` times. A response's reward is its whole-sequence return
``score - kl_coef * sum(KL)``; its baseline is the mean reward of the other ``k - 1`` responses
to the same prompt, ``b_i = (sum_j r_j - r_i) / (k - 1)``, so no value network is needed. The
advantage ``r_i - b_i`` weighs every token of response ``i``.

Read top to bottom: config, rollout layout, advantages, update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from agents.advantages import rloo_advantages
from agents.base import BaseAlgorithm
from agents.collect import Episodes
from agents.config import AlgoConfig
from agents.distributed import whiten  # over the global batch when several ranks train
from agents.losses import clipped_policy_loss, masked_mean
from agents.rewards import SequenceRewards


@dataclass
class RLOOConfig(AlgoConfig):
    """RLOO settings (plus those of :class:`~agents.config.AlgoConfig`)."""

    k: int = field(default=4, metadata={"help": "samples per prompt; rows of the env must be a multiple."})
    normalize_advantage: bool = field(
        default=False,
        metadata={
            "help": "whiten advantages over the batch (SB3's normalize_advantage; TRL's normalize_advantages)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.k, int) and self.k >= 2):
            raise ValueError(
                f"k must be an int >= 2 for a leave-one-out baseline (the others' mean needs another sample), "
                f"got {self.k!r}"
            )


class RLOO(BaseAlgorithm):
    """REINFORCE Leave-One-Out on a textrl vector env; Stable-Baselines3's calling convention.

    Example::

        agent = RLOO("LMPolicy", envs, learning_rate=1e-5, k=4)
        agent.learn(total_timesteps=50_000, progress_bar=True)

    The env's ``num_envs`` rows hold ``num_envs // k`` prompts, each ``k`` times. See
    :class:`~agents.base.BaseAlgorithm` for the shared arguments and :class:`RLOOConfig` for the rest.
    """

    algo_name = "RLOO"
    config_class = RLOOConfig
    config: RLOOConfig

    def _check_batch(self, n_envs: int) -> None:
        super()._check_batch(n_envs)
        k = self.config.k
        if n_envs % k != 0:
            raise ValueError(
                f"num_envs={n_envs} is not a multiple of k={k}: each prompt takes k rows of the vector env; "
                f"use num_envs={max(k, n_envs - n_envs % k)} or another multiple of {k}"
            )

    def _rollout_prompts(self) -> list[str]:
        """``rollout_rows // k`` prompts, each repeated ``k`` times in adjacent rows (prompt-major)."""
        prompts = self.env.prompts
        n_prompts = self.rollout_rows // self.config.k
        index = torch.randint(len(prompts), (n_prompts,), generator=self._cpu_generator)
        return [prompts[i] for i in index.tolist() for _ in range(self.config.k)]

    def _update(self, episodes: Episodes, rewards: SequenceRewards) -> dict[str, Any]:
        advantages = rloo_advantages(rewards.total, self.config.k)  # (N,)
        if self.config.normalize_advantage:
            advantages = whiten(advantages)
        input_ids, attention_mask = episodes.input_ids, episodes.attention_mask  # (N, P + T)
        start = episodes.response_start
        steps, stopped = [], False
        for idx in self.iter_minibatches(len(advantages)):
            _, logprobs, entropy = self.evaluate_sequence(input_ids[idx], attention_mask[idx], start)
            mask = episodes.response_mask[idx]
            # Entropy is only logged: take its value now and let its graph (a softmax over the
            # vocabulary per token) go, instead of holding it through the backward.
            entropy_mean = masked_mean(entropy.detach(), mask)
            del entropy
            # The env's log-probs are the sampling policy's: the ratio is 1 on the first pass.
            loss, stats = clipped_policy_loss(
                logprobs, episodes.logprobs[idx], advantages[idx], mask, self.config.clip_range
            )
            if self.stop_early(stats["approx_kl"]):
                stopped = True
                break
            grad_norm = self.step_optimizer(loss)
            steps.append(
                {
                    "train/policy_loss": loss.detach(),
                    "train/approx_kl": stats["approx_kl"],
                    "train/clip_fraction": stats["clip_fraction"],
                    "train/entropy": entropy_mean,
                    "train/grad_norm": grad_norm.detach(),
                }
            )
        result = self.update_stats(steps, stopped)
        result["train/advantage_std"] = advantages.std()
        return result
