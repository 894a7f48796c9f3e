"""The sequence reward of each collected episode, kept in its parts.

The env's return of an episode is ``score - kl_coef * sum_t KL_t``. An algorithm that credits whole
responses (REINFORCE, RLOO) uses the total; one that credits tokens (PPO) lays the parts out per
token. Both read the same :class:`SequenceRewards`, so no algorithm takes the total apart again.
"""

from __future__ import annotations

import dataclasses
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
    kept = None if episodes.dropped is None or not bool(episodes.dropped.any()) else ~episodes.dropped
    scores = episodes.scores
    if missing_eos is not None:
        scores = missing_eos_penalty(scores, episodes.has_eos, missing_eos)
    kl = episodes.kl * episodes.response_mask  # (N, T)
    total = scores - kl_coef * kl.sum(-1)
    scale = 1.0
    if reward_stats is not None:
        reward_stats.update(total if kept is None else total[kept])
        scale = float(reward_stats.std)
        total = reward_stats.normalize(total, shift_mean=False)
    if kept is not None and bool(kept.any()):
        # A dropped episode has no weight (its response mask is 0, see drop_failed_episodes); it gets
        # the kept episodes' mean reward so batch baselines (RLOO's leave-one-out, whitening, the
        # moving average) see a neutral value rather than a fake 0.
        total = torch.where(kept, total, total[kept].mean())
        scores = torch.where(kept, scores, scores[kept].mean())
    return SequenceRewards(score=scores, kl=kl, kl_coef=float(kl_coef), scale=scale, total=total)


def drop_failed_episodes(episodes: Episodes) -> Episodes:
    """``episodes`` with the response mask of every dropped episode zeroed (it weighs nothing in a loss).

    An episode is dropped when the env's reward failed on it under ``on_reward_error="skip"``. Every
    algorithm's loss is a masked mean over response tokens, so a zero mask gives the episode zero
    weight; :func:`sequence_rewards` also keeps it out of the reward statistics.
    """
    if episodes.dropped is None or not bool(episodes.dropped.any()):
        return episodes
    keep = (~episodes.dropped).to(episodes.response_mask.dtype).unsqueeze(1)  # (N, 1)
    return dataclasses.replace(
        episodes,
        response_mask=episodes.response_mask * keep,
        kl=episodes.kl * keep,
        logprobs=episodes.logprobs * keep,
    )
