"""Sampling completions with the current policy (what :meth:`BaseAlgorithm.evaluate` runs): no training, no side effects."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from agents.collect import collect_episodes
from textrl_env import TextGenerationVectorEnv


@dataclasses.dataclass
class Evaluation:
    """Completions of :meth:`BaseAlgorithm.evaluate`, with the env's score and summed KL of each."""

    prompts: list[str]
    completions: list[str]
    scores: torch.Tensor  # (N,)
    kl: torch.Tensor  # (N,) sum over the response of the per-token KL to the reference

    @property
    def score_mean(self) -> float:
        return float(self.scores.mean())

    @property
    def kl_mean(self) -> float:
        return float(self.kl.mean())


@torch.no_grad()
def evaluate_prompts(
    env: TextGenerationVectorEnv,
    act: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None,
    prompts: Sequence[str],
    deterministic: bool = False,
    n_samples: int = 1,
    seed: int = 0,
) -> Evaluation:
    """Complete each prompt ``n_samples`` times through ``env`` (``act`` as :func:`collect_episodes`'s).

    A sampler seeded by ``seed`` draws the tokens, so a training run's own random streams are
    untouched; prompts are run ``env.num_envs`` at a time.
    """
    if isinstance(prompts, str) or len(prompts) == 0:
        raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
    wanted = [p for p in prompts for _ in range(n_samples)]
    n = env.num_envs
    generator = torch.Generator(device=env.device).manual_seed(seed)
    chunks = []
    for start in range(0, len(wanted), n):
        chunk = wanted[start : start + n]
        padded = chunk + [chunk[-1]] * (n - len(chunk))  # every row needs a prompt
        episodes = collect_episodes(env, padded, act, generator, deterministic=deterministic)
        assert episodes is not None
        chunks.append((chunk, episodes))
    return Evaluation(
        prompts=wanted,
        completions=[c for chunk, ep in chunks for c in ep.completions[: len(chunk)]],
        scores=torch.cat([ep.scores[: len(chunk)] for chunk, ep in chunks]).cpu(),
        kl=torch.cat([ep.kl.sum(-1)[: len(chunk)] for chunk, ep in chunks]).cpu(),
    )
