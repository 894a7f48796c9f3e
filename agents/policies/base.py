"""The policy base class and the observation helpers every policy shares.

An observation is the env's ``Dict`` of ``input_ids`` and ``attention_mask``: a left-padded prompt,
the response so far, then right padding. The next token is predicted from the last column whose
mask is 1. Every method accepts numpy or torch observations, batched ``(B, L)`` or single ``(L,)``.
What an algorithm and the env call on a policy is listed once, in :mod:`agents.policies.protocol`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from textrl_env.logprobs import roll_rows_index, token_entropy, token_logprobs

Obs = Mapping[str, Any]


def obs_to_tensors(
    obs: Obs, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(input_ids (B, L), attention_mask (B, L), batched)`` as int64 tensors on ``device``."""
    if not isinstance(obs, Mapping) or "input_ids" not in obs or "attention_mask" not in obs:
        raise TypeError(
            "obs must be the textrl observation: a dict with 'input_ids' and 'attention_mask' "
            f"(numpy arrays or torch tensors), got {type(obs).__name__}"
        )
    ids = torch.as_tensor(obs["input_ids"], device=device).long()
    mask = torch.as_tensor(obs["attention_mask"], device=device).long()
    if ids.shape != mask.shape or ids.dim() not in (1, 2):
        raise ValueError(
            f"obs['input_ids'] {tuple(ids.shape)} and obs['attention_mask'] {tuple(mask.shape)} must share "
            "one shape, (L,) for a single env or (B, L) for a batch"
        )
    batched = ids.dim() == 2
    return (ids, mask, True) if batched else (ids.unsqueeze(0), mask.unsqueeze(0), False)


def right_align(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll each row so its last real token sits in the last column.

    The trailing padding moves to the front, where it is ordinary left padding, so a causal LM run
    with ``logits_to_keep=1`` yields every row's next-token logits without a ``(B, L, V)`` tensor.
    """
    length = input_ids.shape[1]
    last = attention_mask.cumsum(-1).argmax(-1)  # (B,) index of the last 1 (first max of the cumsum)
    index = roll_rows_index(length - 1 - last, length)  # (B, L)
    return input_ids.gather(1, index), attention_mask.gather(1, index)


def set_training_flag(policy: nn.Module, mode: bool) -> None:
    """Set ``policy.training`` to ``mode`` and keep every submodule in eval mode (dropout off).

    What ``policy.train(mode)`` followed by ``child.eval()`` for each child gives, without walking
    the whole model twice (transformers' ``train`` override on every call): the agents switch modes
    twice per step, and submodules already in eval mode are left alone.
    """
    if not isinstance(mode, bool):
        raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
    policy.training = mode
    for child in policy.children():
        if any(module.training for module in child.modules()):
            child.eval()


def sample_from_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw next tokens ``(B,)`` from raw logits ``(B, V)`` (e.g. the vector env's ``next_token_logits``)."""
    if deterministic:
        return logits.argmax(-1)
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; use deterministic=True for greedy actions"
        )
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    # torch.multinomial refuses NaN probabilities; argmax would quietly pick one. Checked on the
    # device, so a GPU rollout does not wait for the host (there a failure is a device-side
    # assert, as multinomial's own check is).
    torch._assert_async(
        ~probs.isnan().any(),
        "textrl: the logits give NaN probabilities (a NaN or +inf logit, or a row of only -inf); "
        "the policy has diverged or a mask removed every token",
    )
    return (_inverse_cdf_draw if probs.device.type == "cpu" else _exponential_race_draw)(probs, generator)


def _exponential_race_draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Tokens ``(B,)`` drawn from ``probs`` ``(B, V)`` as argmax(p / E), E ~ Exp(1): token i wins with
    probability p_i, in one vectorised pass of fast device random numbers (float32, as
    torch.multinomial's draws are on CUDA), with no host sync."""
    # U = 0 would make E infinite and a row of p / E all zeros, where argmax would pick token 0
    # even at p = 0: U is kept above the smallest normal float.
    uniform = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
    exponential = uniform.clamp_min_(torch.finfo(probs.dtype).tiny).log_().neg_()  # (B, V) Exp(1)
    return (probs / exponential).argmax(-1)


def _inverse_cdf_draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Tokens ``(B,)`` drawn from ``probs`` ``(B, V)`` by inverting the float64 running sum with one
    uniform per row: torch.multinomial's own method on CPU, where a uniform per token (the race
    above) costs more than all the rest of a draw. Float64, so even p ~ 1e-12 keeps its chance."""
    cdf = probs.double().cumsum_(-1)  # (B, V)
    total = cdf[:, -1:]  # (B, 1), 1 up to rounding
    uniform = torch.rand(total.shape, generator=generator, dtype=torch.float64)  # [0, 1)
    # The first token whose running sum passes u * total; u * total can round up to total, which
    # would land past the last token with p > 0: kept just below it.
    point = torch.minimum(uniform * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, point, right=True).squeeze(1)


def check_policy_vocab(policy_vocab_size: int, env_vocab_size: int) -> None:
    """Raise when the policy's logits and the env's action space disagree."""
    if policy_vocab_size != env_vocab_size:
        fix = (
            f"resize its embeddings: model.resize_token_embeddings({env_vocab_size})"
            if policy_vocab_size < env_vocab_size
            # More: embeddings padded past the tokenizer; the policy must be told the real size.
            else "give it the env's tokenizer, LMPolicy(model, tokenizer=env.tokenizer), or "
            f"vocab_size={env_vocab_size}"
        )
        raise ValueError(
            f"the policy emits {policy_vocab_size} logits per token but the env's action space is "
            f"Discrete({env_vocab_size}); actions are token ids, so they must agree. Build the policy on the "
            f"env's own model and tokenizer (the default), or {fix}"
        )


def stepwise_evaluate_sequence(
    policy: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """``evaluate_sequence`` from ``evaluate_actions`` alone: one call per response column.

    What a policy without a teacher-forced path of its own gets: the observation before token
    ``j`` is the sequence with the mask cut at ``j``, so each call sees what the sampler saw.
    Returns ``(values (B, T) | None, logprobs (B, T), entropy (B, T))``, 0 where the mask is 0.
    """
    mask = attention_mask[:, response_start:]
    columns = []
    for j in range(input_ids.shape[1] - response_start):
        seen = attention_mask.clone()
        seen[:, response_start + j :] = 0  # the observation before token j was emitted
        obs = {"input_ids": input_ids, "attention_mask": seen}
        columns.append(policy.evaluate_actions(obs, input_ids[:, response_start + j]))
    values = None if columns[0][0] is None else torch.stack([c[0] for c in columns], 1) * mask
    logprobs = torch.stack([c[1] for c in columns], 1) * mask  # (B, T)
    entropy = torch.stack([c[2] for c in columns], 1) * mask
    return values, logprobs, entropy


class BasePolicy(nn.Module):
    """Base of textrl policies: a subclass implements :meth:`forward` (next-token logits) and may
    override :meth:`predict_values`; everything else of :class:`~agents.policies.protocol.TextPolicy`
    comes from here, correct if slow, and a subclass overrides what it can do faster.

    Args:
        temperature: the sampling temperature; log-probs are those of ``softmax(logits / temperature)``.
    """

    has_lora: bool = False  # LMPolicy sets it; checkpoints save an adapter instead of the full model

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    @property
    def device(self) -> torch.device:
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    # ------------------------------------------------------------------ SB3's verbs, per step

    def forward(self, obs: Obs) -> torch.Tensor:
        """Raw next-token logits ``(B, V)``."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement forward(obs) -> next-token logits (B, V)"
        )

    def predict_values(self, obs: Obs) -> torch.Tensor | None:
        """State values ``(B,)``, or None for a policy without a critic."""
        return None

    def act(
        self, obs: Obs, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Next tokens ``(B,)`` (no grad): sampled at the policy's temperature, or greedy."""
        with torch.no_grad():
            return sample_from_logits(self(obs), self.temperature, deterministic, generator)

    def evaluate_actions(
        self, obs: Obs, actions: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(values (B,) | None, log_prob (B,), entropy (B,))`` of ``actions`` under the current policy (with grad)."""
        logits = self(obs)  # (B, V)
        actions = torch.as_tensor(actions, device=logits.device).long().reshape(-1)
        return (
            self.predict_values(obs),
            token_logprobs(logits, actions, self.temperature),
            token_entropy(logits, self.temperature),
        )

    def predict(
        self,
        obs: Obs,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's ``predict``: numpy actions, shape ``()`` for one observation or ``(B,)``."""
        _, _, batched = obs_to_tensors(obs)
        actions = self.act(obs, deterministic=deterministic).cpu().numpy()
        return (actions if batched else actions[0]), None

    # ------------------------------------------------------------------ whole responses

    def evaluate_sequence(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(values (B, T) | None, logprobs (B, T), entropy (B, T))`` of a whole response (with grad).

        Here one :meth:`evaluate_actions` call per response column; LM policies override it with
        one teacher-forced forward.
        """
        return stepwise_evaluate_sequence(self, input_ids, attention_mask, response_start)

    def sequence_values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> torch.Tensor | None:
        """Per-token values ``(B, T)`` (the state before each response token), or None without a critic."""
        return self.evaluate_sequence(input_ids, attention_mask, response_start)[0]

    # ------------------------------------------------------------------ what the env needs to know

    @property
    def has_values(self) -> bool:
        """Whether the policy has a critic (:meth:`predict_values` is overridden)."""
        return type(self).predict_values is not BasePolicy.predict_values

    @property
    def vocab_size(self) -> int | None:
        """Logits per token, checked against the env's action space; None when unknown."""
        return None

    def samples_from(self, model: nn.Module) -> bool:
        """True when this policy's next-token logits are exactly ``model``'s (at the same temperature).

        Then an env that generates with ``model`` can sample for the policy from its own cached
        forward (``logits_source="env"``); otherwise the agent hands the env the policy's logits.
        """
        return False

    def reference_model(self) -> nn.Module | None:
        """A KL reference the policy carries itself (a LoRA policy: its model, adapter off), or None
        to keep the env's frozen copy."""
        return None
