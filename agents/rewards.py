"""The sequence reward of each collected episode, kept in its parts.

The env's return of an episode is ``score - kl_coef * sum_t KL_t``. An algorithm that credits whole
responses (REINFORCE, RLOO) uses the total; one that credits tokens (PPO) lays the parts out per
token. Both read the same :class:`SequenceRewards`, so no algorithm takes the total apart again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.collect import Episodes
from reward_models.shaping import RunningMeanStd, missing_eos_penalty


@dataclass
class SequenceRewards:
    """Per-episode rewards and what they are made of; ``total = (score - kl_coef * kl.sum(-1)) / scale``."""

    score: torch.Tensor  # (N,) reward-model score, after the optional missing-EOS penalty
    kl: torch.Tensor  # (N, T) per-token KL to the reference (0 past each response)
    kl_coef: float  # the KL coefficient the total was built with
    scale: float  # 1, or the running reward std when rewards are normalised
    total: torch.Tensor  # (N,) the sequence reward algorithms optimise

    @property
    def kl_sum(self) -> torch.Tensor:
        """``(N,)`` summed KL of each response."""
        return self.kl.sum(-1)


def sequence_rewards(
    episodes: Episodes,
    kl_coef: float,
    missing_eos: float | None = None,
    reward_stats: RunningMeanStd | None = None,
) -> SequenceRewards:
    """Build :class:`SequenceRewards` from what the env reported.

    Args:
        episodes: the collected batch (scores and per-token KL from the env).
        kl_coef: the coefficient to apply (the agent's KL controller's current value).
        missing_eos: subtracted from the score of responses that hit the length limit; None = off.
        reward_stats: when given, it is updated with this batch's totals and the totals are divided
            by its std (the mean is kept), as ``normalize_rewards`` asks.
    """
    scores = episodes.scores
    if missing_eos is not None:
        scores = missing_eos_penalty(scores, episodes.has_eos, missing_eos)
    kl = episodes.kl * episodes.response_mask  # (N, T)
    total = scores - kl_coef * kl.sum(-1)
    scale = 1.0
    if reward_stats is not None:
        reward_stats.update(total)
        scale = float(reward_stats.std)
        total = reward_stats.normalize(total, shift_mean=False)
    return SequenceRewards(score=scores, kl=kl, kl_coef=float(kl_coef), scale=scale, total=total)
