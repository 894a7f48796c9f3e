"""Collecting one batch of finished episodes from the native vector env.

Every algorithm gathers data the same way: reset the vector env with one prompt per row, step it
with sampled tokens until every row's first episode has ended, and keep what the env reported at
each row's last step (the full sequence, the policy's and the reference's log-probs, the KL terms
and the score). Nothing the env computed is computed again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from agents.policies.base import sample_from_logits
from textrl_env import TextGenerationVectorEnv
from textrl_env.logprobs import real_vocab_logits


@dataclass
class Episodes:
    """A batch of finished episodes, one per env row, on the env's device."""

    prompts: list[str]
    completions: list[str]
    prompt_ids: torch.Tensor  # (N, P) left-padded
    prompt_mask: torch.Tensor  # (N, P)
    response_ids: torch.Tensor  # (N, T) PAD after the response
    response_mask: torch.Tensor  # (N, T) 1 up to and including EOS
    logprobs: torch.Tensor  # (N, T) of the sampling policy, from the env
    ref_logprobs: torch.Tensor  # (N, T) of the reference, from the env
    kl: torch.Tensor  # (N, T) per-token KL estimate, from the env
    scores: torch.Tensor  # (N,) reward-model scores
    env_steps: int  # vector-env steps it took
    dropped: torch.Tensor | None = (
        None  # (N,) bool: the reward failed and the env skipped it (on_reward_error="skip")
    )

    @property
    def input_ids(self) -> torch.Tensor:
        """``(N, P + T)`` prompt followed by response."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """``(N, P + T)`` mask of real tokens (padding and everything after EOS is 0)."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    @property
    def response_start(self) -> int:
        """The column where the response begins (``P``)."""
        return self.prompt_ids.shape[1]

    @property
    def has_eos(self) -> torch.Tensor:
        """``(N,)`` whether each response ended with EOS (rather than at the length limit)."""
        return self.response_mask.sum(-1) < self.response_mask.shape[1]


StepHook = Callable[[], bool]


def collect_episodes(
    env: TextGenerationVectorEnv,
    prompts: list[str],
    act: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None,
    generator: torch.Generator | None,
    on_step: StepHook | None = None,
    deterministic: bool = False,
) -> Episodes | None:
    """Run one episode per row from ``prompts`` (one per env row).

    Args:
        env: the native vector env.
        prompts: ``env.num_envs`` prompts, one per row.
        act: for a policy attached with ``logits_source="policy"``, a function ``obs -> logits (N, V)``
            (or more columns, for a padded vocabulary: they are dropped); its logits are handed to the
            env (``set_policy_logits``). None samples from the env's own
            ``next_token_logits`` (``logits_source="env"``: the policy is the env's model; no second forward).
        generator: the sampler's RNG, for reproducible runs.
        on_step: called after every env step; returning False stops collection (returns None).
        deterministic: greedy tokens instead of sampled ones.
    """
    # One episode per row: rows that ended stay ended instead of starting episodes nobody keeps;
    # and they are read once all have ended, so the env scores them all in one batched pass.
    with env.without_autoreset(score_together=True):
        return _collect(env, prompts, act, generator, on_step, deterministic)


def _collect(
    env: TextGenerationVectorEnv,
    prompts: list[str],
    act: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None,
    generator: torch.Generator | None,
    on_step: StepHook | None,
    deterministic: bool,
) -> Episodes | None:
    obs, _ = env.reset(options={"prompt": prompts})
    n, p, t = env.num_envs, env.prompt_length, env.max_new_tokens
    device = env.device
    ids = torch.zeros((n, p + t), dtype=torch.long, device=device)
    mask = torch.zeros((n, p + t), dtype=torch.long, device=device)
    stores = {key: torch.zeros((n, t), device=device) for key in ("logprobs", "ref_logprobs", "kl")}
    scores = torch.zeros(n, device=device)
    dropped = torch.zeros(n, dtype=torch.bool, device=device)
    completions = [""] * n
    recorded = np.zeros(n, dtype=bool)
    steps = 0
    while not recorded.all():
        if act is None:
            logits = env.next_token_logits
        else:
            with torch.no_grad():
                # A custom policy on a padded vocabulary may emit logits for ids no token has: drop
                # them, so they are never sampled and the env measures the same distribution.
                logits = real_vocab_logits(act(obs), env.vocab_size)  # (N, V)
            env.set_policy_logits(logits)
        actions = sample_from_logits(logits, env.temperature, deterministic, generator)
        obs, _, _, _, info = env.step(actions)
        steps += 1
        new = info["_score"] & ~recorded if "_score" in info else None
        if new is not None and new.any():
            rows = torch.as_tensor(np.flatnonzero(new), device=device)
            ids[rows], mask[rows] = obs["input_ids"][rows], obs["attention_mask"][rows]
            for key, store in stores.items():
                store[rows] = info[key][rows]
            scores[rows] = info["score"][rows]
            if "reward_error" in info:
                dropped[rows] = torch.as_tensor(info["reward_error"], device=device)[rows]
            for i in np.flatnonzero(new):
                completions[i] = info["completion"][i]
            recorded |= new
        if on_step is not None and not on_step():
            return None
    return Episodes(
        prompts=list(prompts),
        completions=completions,
        prompt_ids=ids[:, :p],
        prompt_mask=mask[:, :p],
        response_ids=ids[:, p:],
        response_mask=mask[:, p:],
        logprobs=stores["logprobs"],
        ref_logprobs=stores["ref_logprobs"],
        kl=stores["kl"],
        scores=scores,
        env_steps=steps,
        dropped=dropped,
    )
