"""What the single and the vector environment share: the models, the prompt layout and scoring.

Both envs hold a :class:`GenerationCore`; the single env is the plain reference implementation and
the vector env the fast path, and keeping the checks and the end-of-episode scoring here is what
makes them agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from reward_models import RewardModel, compute_rewards, kl_penalty, resolve_reward, score_skipping_errors
from reward_models.errors import check_on_reward_error
from reward_models.shaping import KL_ESTIMATORS, KLEstimator
from textrl_env.logprobs import sequence_logprobs
from textrl_env.models import ModelLike, context_length, frozen_copy, load_model_and_tokenizer
from textrl_env.prompts import encode_prompts, tokenize_prompts


@dataclass
class EpisodeScores:
    """End-of-episode numbers for a batch of finished responses (all on the model's device)."""

    score: torch.Tensor  # (B,) reward-model score
    kl: torch.Tensor  # (B, T) per-token KL, 0 past each response
    logprobs: torch.Tensor  # (B, T) policy log-probs of the response tokens
    ref_logprobs: torch.Tensor  # (B, T) reference log-probs
    reward: torch.Tensor  # (B,) score - kl_coef * sum_t kl
    completions: list[str]
    reward_error: torch.Tensor  # (B,) bool: the reward failed and on_reward_error="skip" dropped the row


class GenerationCore:
    """Validated settings, models and prompt tensors of a text-generation environment.

    See :class:`textrl_env.TextGenerationEnv` for the meaning of each argument.
    """

    def __init__(
        self,
        model: ModelLike,
        tokenizer: Any,
        prompts: Sequence[str],
        reward_model: RewardModel | None,
        kl_coef: float,
        kl_estimator: str,
        max_new_tokens: int,
        max_prompt_tokens: int | None,
        temperature: float,
        ref_model: nn.Module | None,
        device: str | torch.device | None,
        on_reward_error: str = "raise",
    ) -> None:
        check_settings(prompts, reward_model, kl_coef, kl_estimator, max_new_tokens, temperature)
        self.on_reward_error = check_on_reward_error(on_reward_error)
        self.reward_errors = 0  # episodes dropped by on_reward_error="skip" so far
        self.model, self.tokenizer = load_model_and_tokenizer(model, tokenizer, device)
        self.device = next(self.model.parameters()).device
        self.ref_model = frozen_copy(self.model) if ref_model is None else ref_model.to(self.device).eval()
        self.ref_model.requires_grad_(False)
        self.reward_model = reward_model  # type: ignore[assignment]  # checked callable above
        self.kl_coef = float(kl_coef)
        self.kl_estimator = cast(KLEstimator, kl_estimator)  # validated by check_settings
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        # The tokenizer's size, checked against the model's logits on loading: a model with a padded
        # vocabulary emits more, whose extra logits every sampler and log-prob here drops.
        self.vocab_size = len(self.tokenizer)
        self.eos_token_id = int(self.tokenizer.eos_token_id)
        self.pad_token_id = int(self.tokenizer.pad_token_id)
        self.prompts = list(prompts)
        longest = max(len(ids) for ids in tokenize_prompts(self.tokenizer, self.prompts))
        if max_prompt_tokens is not None and (
            isinstance(max_prompt_tokens, bool)
            or not isinstance(max_prompt_tokens, int)
            or max_prompt_tokens < 1
        ):
            raise ValueError(
                f"max_prompt_tokens must be None (the longest prompt) or an int >= 1, got {max_prompt_tokens!r}"
            )
        self.prompt_length = int(max_prompt_tokens) if max_prompt_tokens is not None else longest
        context = context_length(self.model)
        if context is not None and self.prompt_length + self.max_new_tokens > context:
            raise ValueError(
                f"prompt window {self.prompt_length} + max_new_tokens {self.max_new_tokens} = "
                f"{self.prompt_length + self.max_new_tokens} tokens exceeds the model's context of {context}; "
                "shorten the prompts, lower max_prompt_tokens or lower max_new_tokens"
            )
        ids, mask = encode_prompts(self.tokenizer, self.prompts, self.prompt_length)
        self.prompt_ids = ids.to(self.device)  # (N_prompts, P)
        self.prompt_mask = mask.to(self.device)  # (N_prompts, P)
        self._prompt_index = {p: i for i, p in enumerate(self.prompts)}

    def set_reference(self, reference: nn.Module) -> None:
        """Measure the KL against ``reference`` from now on (frozen here); the old reference is released."""
        if not isinstance(reference, nn.Module):
            raise TypeError(
                f"reference must be a torch.nn.Module (a causal LM), got {type(reference).__name__}"
            )
        self.ref_model = reference.to(self.device).eval().requires_grad_(False)

    @property
    def reward_model(self) -> RewardModel:
        """The reward as given; its calling convention (textrl's or TRL's) is decided when it is set."""
        return self._reward.func

    @reward_model.setter
    def reward_model(self, reward: RewardModel) -> None:
        self._reward = resolve_reward(reward)

    @property
    def seq_length(self) -> int:
        """Observation length: the prompt window plus the response slots."""
        return self.prompt_length + self.max_new_tokens

    def observation_space(self) -> spaces.Dict:
        """Integer token ids and a 0/1 mask, both of the fixed observation length."""
        n = self.seq_length
        return spaces.Dict(
            {
                "input_ids": spaces.Box(0, self.vocab_size - 1, shape=(n,), dtype=np.int64),
                "attention_mask": spaces.Box(0, 1, shape=(n,), dtype=np.int64),
            }
        )

    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``(ids, mask)`` of one prompt given at reset time, shape ``(P,)`` each."""
        ids, mask = encode_prompts(self.tokenizer, [prompt], self.prompt_length)
        return ids[0].to(self.device), mask[0].to(self.device)

    def encode_prompt_batch(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``(ids, mask)`` of ``(R, P)`` for these prompts; the env's own are pre-tokenized."""
        index = [self._prompt_index.get(p) for p in prompts]
        if all(i is not None for i in index):
            rows = torch.as_tensor(index, device=self.device)
            return self.prompt_ids[rows], self.prompt_mask[rows]
        ids, mask = encode_prompts(self.tokenizer, prompts, self.prompt_length)
        return ids.to(self.device), mask.to(self.device)

    def decode(self, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
        """Response text per row, without EOS or padding."""
        rows = [
            ids[m.bool()].tolist() for ids, m in zip(response_ids.cpu(), response_mask.cpu(), strict=True)
        ]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    @torch.no_grad()
    def score(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompts: list[str],
        logprobs: torch.Tensor | None = None,
    ) -> EpisodeScores:
        """Score finished episodes in one batched, teacher-forced pass of each model.

        Args:
            input_ids: ``(B, P + T)`` prompt window followed by the response slots.
            attention_mask: ``(B, P + T)``; response columns are 1 up to and including EOS.
            prompts: the prompt text of each row, for the reward model.
            logprobs: ``(B, T)`` policy log-probs already measured while stepping (the vector env
                keeps them from its KV-cached forwards); computed here when None.
        """
        response_ids = input_ids[:, self.prompt_length :]  # (B, T)
        response_mask = attention_mask[:, self.prompt_length :]
        start = self.prompt_length  # sequence_logprobs drops the prompt columns no row uses
        if logprobs is None:
            logprobs = sequence_logprobs(
                self.model, input_ids, attention_mask, start, self.temperature, vocab_size=self.vocab_size
            )
        ref_logprobs = sequence_logprobs(
            self.ref_model, input_ids, attention_mask, start, self.temperature, vocab_size=self.vocab_size
        )
        kl = kl_penalty(logprobs, ref_logprobs, response_mask, estimator=self.kl_estimator)  # (B, T)
        completions = self.decode(response_ids, response_mask)
        if self.on_reward_error == "skip":
            scored = score_skipping_errors(self._reward, prompts, completions)
            score, failed = scored.values.to(self.device), scored.failed.to(self.device)
            self.reward_errors += int(scored.failed.sum())
        else:
            score = compute_rewards(self._reward, prompts, completions).to(self.device)  # (B,)
            failed = torch.zeros(len(completions), dtype=torch.bool, device=self.device)
        # A dropped row's return is 0 (no score, no KL penalty): nothing to learn from it.
        reward = torch.where(failed, 0.0, score - self.kl_coef * kl.sum(-1))
        return EpisodeScores(score, kl, logprobs, ref_logprobs, reward, completions, failed)


class CoreAttributes:
    """What agents and users read on either env; the env's core holds the values.

    The env owns all of them. The one setting an agent changes while training is the KL
    coefficient, through :meth:`set_kl_coef` (an adaptive controller, between rollouts).
    """

    core: GenerationCore

    model = property(lambda self: self.core.model, doc="The policy: the very module an agent trains.")
    ref_model = property(lambda self: self.core.ref_model, doc="The frozen KL reference.")
    tokenizer = property(lambda self: self.core.tokenizer)
    prompts = property(lambda self: self.core.prompts)
    reward_model = property(lambda self: self.core.reward_model)
    prompt_length = property(lambda self: self.core.prompt_length, doc="P: columns of the prompt window.")
    max_new_tokens = property(lambda self: self.core.max_new_tokens, doc="T: the response length limit.")
    temperature = property(lambda self: self.core.temperature)
    vocab_size = property(
        lambda self: self.core.vocab_size,
        doc="V: the tokenizer's size, the action space's n (a model with a padded vocabulary emits more "
        "logits; the extra ones are dropped).",
    )
    eos_token_id = property(lambda self: self.core.eos_token_id)
    pad_token_id = property(lambda self: self.core.pad_token_id)
    device = property(lambda self: self.core.device)
    kl_estimator = property(lambda self: self.core.kl_estimator)
    on_reward_error = property(lambda self: self.core.on_reward_error)
    reward_errors = property(
        lambda self: self.core.reward_errors, doc="Episodes dropped so far by on_reward_error='skip'."
    )

    @property
    def kl_coef(self) -> float:
        """KL penalty coefficient applied to the episodes that end from now on (see :meth:`set_kl_coef`)."""
        return self.core.kl_coef

    def set_kl_coef(self, value: float) -> None:
        """Apply ``value`` as the KL coefficient from the next finished episode on (an adaptive controller's)."""
        if not (is_number(value) and value >= 0 and math.isfinite(value)):
            raise ValueError(f"kl_coef must be a finite number >= 0, got {value!r}")
        self.core.kl_coef = float(value)


def is_number(value: Any) -> bool:
    """A real number that is not a bool (``True`` is an int to Python, never a setting)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_prompts(prompts: Any, name: str = "prompts") -> None:
    """Raise unless ``prompts`` is a non-empty sequence of strings (a TypeError names the first non-str)."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise ValueError(f"{name} must be a non-empty list of strings, got {prompts!r}")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(prompt).__name__}: {prompt!r}")


def check_settings(
    prompts: Sequence[str],
    reward_model: Any,
    kl_coef: float,
    kl_estimator: str,
    max_new_tokens: int,
    temperature: float,
) -> None:
    """Validate the scalar settings, naming the bad value and the fix."""
    check_prompts(prompts)
    if not callable(reward_model):
        raise TypeError(
            f"reward_model must be callable as reward_model(prompts, completions) -> list[float] (or, as "
            f"in TRL, reward_model(prompts=..., completions=...)), got {type(reward_model).__name__}"
        )
    # A signature that fits neither calling convention fails here, not in the middle of a rollout.
    resolve_reward(reward_model)
    if not (is_number(kl_coef) and math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")
    if not isinstance(kl_estimator, str) or kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}")
    if isinstance(max_new_tokens, bool) or not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not (is_number(temperature) and temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
