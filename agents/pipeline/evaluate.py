"""Scoring a model on the held-out openers: gold score, proxy (learned reward) score and KL to the SFT model.

Every evaluation of a run samples the same prompts with the same seed, so the SFT model and each
round's policy are compared on common random numbers, and the differences are less noisy.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from agents.pipeline.context import RunContext
from agents.pipeline.data import heldout_prompts, sample, sampling_env, zero_reward
from reward_models import RewardModel, compute_rewards

N_SHOWN = 8  # samples kept in eval.json beyond the means (the SFT model's are all kept)


@dataclass
class Scores:
    """Means over the held-out samples of one model, and the samples themselves."""

    gold: float | None
    proxy: float | None
    kl: float
    prompts: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    gold_scores: list[float] = field(default_factory=list)

    def to_dict(self, keep: int | None = N_SHOWN) -> dict[str, Any]:
        data = asdict(self)
        for key in ("prompts", "completions", "gold_scores"):
            data[key] = data[key][:keep] if keep is not None else data[key]
        return data


def mean_gold(
    run: RunContext, prompts: list[str], completions: list[str]
) -> tuple[float | None, list[float]]:
    """``(mean, per-sample)`` gold scores; ``(None, [])`` without a gold scorer."""
    if run.gold is None:
        return None, []
    scores = [float(s) for s in compute_rewards(run.gold, prompts, completions).tolist()]
    return statistics.fmean(scores), scores


def evaluate_model(
    run: RunContext,
    model: nn.Module,
    reward: RewardModel | None,
    ref_model: nn.Module | None,
    n_samples: int,
    description: str,
) -> Scores:
    """Sample ``n_samples`` completions of each held-out opener and score them.

    Args:
        run: the run.
        model: the model to sample.
        reward: the proxy (a learned reward model); None reports no proxy score.
        ref_model: the KL reference (the SFT model); None measures no KL.
        n_samples: completions per opener.
        description: the progress bar's label.
    """
    config = run.config
    env = sampling_env(model, run.tokenizer, reward or zero_reward, ref_model, config, config.num_envs or 16)
    with run.progress() as bar:
        done = sample(env, heldout_prompts(), n_samples, run.seed("eval", 0), bar, description)
    gold, gold_scores = mean_gold(run, done.prompts, done.completions)
    return Scores(
        gold=gold,
        proxy=float(done.scores.mean()) if reward is not None else None,
        kl=float(done.kl.mean()),
        prompts=done.prompts,
        completions=done.completions,
        gold_scores=gold_scores,
    )


__all__ = ["Scores", "evaluate_model", "mean_gold"]
