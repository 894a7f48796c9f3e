"""What the pipeline feeds its stages: demonstrations, each round's prompts, and samples of a policy.

The default task continues movie-review openers (``textrl/Sentiment-v0``'s). Demonstrations are
review lines of the default model's own corpus generator, kept when the gold scorer does not rate
them negative: what a demonstrator asked for "a good review" would write, and something SFT can
learn, so the SFT model's gold score (``gold_sft``) is a real step up from the base model's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from agents.evaluation import Completions, sample_completions
from agents.sft import Demonstration
from reward_models import RewardModel, compute_rewards
from textrl_env import TextGenerationVectorEnv


def progress_bar(console: Console | None, enabled: bool) -> Progress:
    """The rich progress bar every long pipeline step draws."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=console, disable=not enabled,
    )  # fmt: skip


def train_prompts() -> list[str]:
    """The review openers the policy trains on (and pairs are sampled on)."""
    from textrl_env.default_model import SENTIMENT_PROMPTS

    return list(SENTIMENT_PROMPTS)


def heldout_prompts() -> list[str]:
    """Openers never trained on, for every evaluation."""
    from textrl_env.default_model import HELDOUT_SENTIMENT_PROMPTS

    return list(HELDOUT_SENTIMENT_PROMPTS)


def generate_demonstrations(n: int, gold: RewardModel, min_gold: float, seed: int) -> list[Demonstration]:
    """``n`` (opener, continuation) demonstrations from the corpus generator with gold score >= ``min_gold``.

    Raises:
        ValueError: too few corpus lines pass ``min_gold`` (lower it).
    """
    from textrl_env.default_model.corpus import review_sentence

    openers = sorted(train_prompts(), key=len, reverse=True)  # longest first: "i thought the film" before "i"
    rng = random.Random(seed)
    demos: list[Demonstration] = []
    for _ in range(50 * n):
        line = review_sentence(rng)
        opener = next(o for o in openers if line.startswith(o + " "))
        response = line[len(opener) :]  # keeps the leading space: it continues the opener
        if float(compute_rewards(gold, [opener], [response])[0]) >= min_gold:
            demos.append(Demonstration(opener, response))
            if len(demos) == n:
                return demos
    raise ValueError(
        f"only {len(demos)} of {n} corpus lines reach sft_min_gold={min_gold}; lower sft_min_gold or "
        "sft_demonstrations"
    )


def round_prompts(n: int, seed: int, round_: int) -> list[str]:
    """``n`` training openers drawn for round ``round_`` (a fresh draw each round, seeded)."""
    prompts = train_prompts()
    rng = random.Random(f"{seed}:prompts:{round_}")
    return [rng.choice(prompts) for _ in range(n)]


def zero_reward(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
    """A placeholder score for sampling when no reward model exists yet (pairs are judged by the labeler)."""
    return [0.0] * len(completions)


def sampling_env(
    model: nn.Module,
    tokenizer: Any,
    reward: RewardModel,
    ref_model: nn.Module | None,
    config: Any,
    num_envs: int,
) -> TextGenerationVectorEnv:
    """A vector env around ``model`` for sampling and scoring; ``ref_model=None`` measures no KL (it is the model)."""
    return TextGenerationVectorEnv(
        model=model,
        tokenizer=tokenizer,
        prompts=train_prompts(),
        reward_model=reward,
        num_envs=num_envs,
        kl_coef=config.kl_coef,
        max_new_tokens=config.max_new_tokens,
        max_prompt_tokens=16,  # as textrl/Sentiment-v0: held-out openers fit too
        ref_model=ref_model if ref_model is not None else model,
        device=config.device,
    )


def sample(
    env: TextGenerationVectorEnv,
    prompts: Sequence[str],
    n_samples: int,
    seed: int,
    progress: Progress,
    description: str,
) -> Completions:
    """:func:`agents.evaluation.sample_completions` in chunks of the env's rows, with a progress bar."""
    per_chunk = max(1, env.num_envs // n_samples)
    chunks = [list(prompts[i : i + per_chunk]) for i in range(0, len(prompts), per_chunk)]
    task = progress.add_task(description, total=len(prompts) * n_samples)
    parts = []
    for index, chunk in enumerate(chunks):
        parts.append(sample_completions(env, chunk, n_samples, seed=seed + index))
        progress.update(task, advance=len(chunk) * n_samples)
    return Completions(
        prompts=[p for part in parts for p in part.prompts],
        completions=[c for part in parts for c in part.completions],
        scores=torch.cat([part.scores for part in parts]),
        kl=torch.cat([part.kl for part in parts]),
    )


__all__ = [
    "generate_demonstrations",
    "heldout_prompts",
    "progress_bar",
    "round_prompts",
    "sample",
    "sampling_env",
    "train_prompts",
    "zero_reward",
]
