"""Causal language models as policies: :class:`LMPolicy` (no critic) and :class:`LMActorCriticPolicy`.

Both measure whole responses with :func:`textrl_env.logprobs.teacher_forced`, the same forward the
env scores with, so the log-probs an update sees are the ones the env reported.

Dropout is always off inside the policy (the wrapped model stays in ``eval()`` mode while gradients
still flow): with dropout on, the log-prob of a token at sampling time and at update time would be
measured under different random masks, so the PPO ratio and the KL to the reference would be noise
even before any update ("The N+ implementation details of RLHF with PPO", detail on dropout).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any, Literal, cast

import torch
from torch import nn

from agents.lora import AdapterOffReference
from agents.policies.base import BasePolicy, Obs, obs_to_tensors, right_align, set_training_flag
from reward_models.safe_loading import from_pretrained_safely
from textrl_env.logprobs import (
    accepts_logits_to_keep,
    position_ids_from_mask,
    real_vocab_logits,
    sequence_logprobs,
    teacher_forced,
    token_entropy,
    token_logprobs,
)
from textrl_env.models import check_vocab


def _model_vocab_size(model: Any) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and hasattr(head, "out_features"):
        return int(head.out_features)
    return int(model.config.vocab_size)


def _real_vocab_size(model: Any, tokenizer: Any, vocab_size: int | None) -> int:
    """Token ids the policy acts over: ``vocab_size``, else ``len(tokenizer)``, else every logit.

    A model whose embeddings are padded emits more logits than its tokenizer has tokens; the extra
    ids (at the end) are no token, and the policy drops their logits (:func:`real_vocab_logits`).
    """
    n_logits = _model_vocab_size(model)
    if vocab_size is None:
        return check_vocab(model, tokenizer) if tokenizer is not None else n_logits
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 1 <= vocab_size <= n_logits:
        raise ValueError(
            f"vocab_size must be an int in [1, {n_logits}] (the model emits {n_logits} logits), got "
            f"{vocab_size!r}; pass the tokenizer's size, len(tokenizer), or leave it out to take it from tokenizer"
        )
    return vocab_size


def _model_hidden_size(model: Any) -> int:
    """Width of the LM's last hidden state (duck-typed: any transformers causal LM)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(head.in_features) if head is not None else int(model.config.hidden_size)


def _value_head(model: Any, init_std: float, device: torch.device | None = None) -> nn.Linear:
    """A scalar linear head on ``model``'s last hidden state: weights ``N(0, init_std)``, bias 0."""
    head = nn.Linear(_model_hidden_size(model), 1, device=device)
    nn.init.normal_(head.weight, std=init_std)
    nn.init.zeros_(head.bias)
    return head


def _run_lm(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int, hidden: bool
) -> Any:
    """One causal-LM forward (positions from the mask, no cache); logits of the last ``keep`` columns where supported."""
    kwargs: dict[str, Any] = {"output_hidden_states": True} if hidden else {}
    if accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep
    return model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        **kwargs,
    )


def _load_model(model: nn.Module | str | os.PathLike) -> nn.Module:
    if isinstance(model, str | os.PathLike):
        from transformers import AutoModelForCausalLM

        model = from_pretrained_safely(AutoModelForCausalLM, os.fspath(model))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a causal LM module or a path to one, got {type(model).__name__}")
    return model


def _wrap_lora(model: nn.Module, lora_config: Any) -> nn.Module:
    try:
        import peft
    except ImportError as err:
        raise ImportError(
            "lora_config needs the peft package; install it with: pip install textrl[lora]"
        ) from err
    if isinstance(lora_config, Mapping):
        lora_config = peft.LoraConfig(**{"task_type": "CAUSAL_LM", **lora_config})
    if not isinstance(lora_config, peft.LoraConfig):
        raise TypeError(
            f"lora_config must be a peft.LoraConfig, a dict of its fields, or None; got {lora_config!r}"
        )
    return peft.get_peft_model(model, lora_config)


class LMPolicy(BasePolicy):
    """A causal language model as a policy (no critic): REINFORCE and RLOO use it.

    Args:
        model: a transformers causal LM (``AutoModelForCausalLM``), or an id/path to load one. Pass the
            env's own ``env.model`` so the env scores the policy being trained.
        tokenizer: kept for saving and decoding; optional.
        temperature: the sampling temperature (match the env's).
        lora_config: train a LoRA adapter instead of the full model (``peft.LoraConfig`` or a dict of its
            fields); the reference is then the same model with the adapter disabled.
        vocab_size: the token ids the policy acts over (default: ``len(tokenizer)``, else every logit).
            A model with a padded vocabulary emits more logits than that; the extra ids' are dropped
            everywhere (sampling, log-probs, entropy), so they are never drawn and every
            distribution is over the real tokens.
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        tokenizer: Any = None,
        temperature: float = 1.0,
        lora_config: Any = None,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__(temperature)
        model = _load_model(model)
        self._vocab_size = _real_vocab_size(model, tokenizer, vocab_size)
        self.model = _wrap_lora(model, lora_config) if lora_config is not None else model
        self.tokenizer = tokenizer
        self.has_lora = lora_config is not None
        self.model.eval()

    def train(self, mode: bool = True) -> LMPolicy:
        """Set the training flag but keep every submodule in eval mode (dropout off; see module doc)."""
        set_training_flag(self, mode)
        return self

    @property
    def vocab_size(self) -> int:
        """Token ids the policy acts over: the tokenizer's size (fewer than the logits of a padded model)."""
        return self._vocab_size

    def _next_token(self, obs: Obs, hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits ``(B, V)`` and, when asked, the last layer's hidden state there ``(B, H)``."""
        ids, mask, _ = obs_to_tensors(obs, self.device)
        ids, mask = right_align(ids, mask)
        out = _run_lm(self.model, ids, mask, keep=1, hidden=hidden)
        logits = real_vocab_logits(out.logits[:, -1], self._vocab_size)  # (B, V)
        return logits, (out.hidden_states[-1][:, -1] if hidden else None)

    def forward(self, obs: Obs) -> torch.Tensor:
        """Raw (not temperature-scaled) next-token logits ``(B, V)`` at each row's last real column."""
        return self._next_token(obs)[0]

    def sequence_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_start: int,
        return_entropy: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log-probs ``(B, T)`` of ``input_ids[:, response_start:]`` at the policy's temperature."""
        return sequence_logprobs(
            self.model,
            input_ids,
            attention_mask,
            response_start,
            self.temperature,
            return_entropy,
            vocab_size=self._vocab_size,
        )

    def evaluate_sequence(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_start: int,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The sequence form of :meth:`evaluate_actions`: ``(values (B, T) | None, logprobs (B, T), entropy (B, T))``."""
        logprobs, entropy = self.sequence_logprobs(
            input_ids, attention_mask, response_start, return_entropy=True
        )
        return None, logprobs, entropy

    def samples_from(self, model: nn.Module) -> bool:
        """True when ``model`` is this policy's own LM (under any LoRA wrapper) and no subclass
        changed how logits are made, so the env's cached forward of ``model`` samples for it."""
        kind = type(self)
        same_code = kind.forward is LMPolicy.forward and kind.sequence_logprobs is LMPolicy.sequence_logprobs
        own: Any = self.model
        base = own.get_base_model() if self.has_lora else own
        return same_code and base is model

    def reference_model(self) -> nn.Module | None:
        """With LoRA, the policy's own model with the adapter switched off (no second copy of the weights)."""
        return AdapterOffReference(self.model) if self.has_lora else None

    def reference_logprobs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> torch.Tensor:
        """Log-probs under the reference, i.e. the base model with the LoRA adapter switched off (no grad)."""
        if not self.has_lora:
            raise ValueError(
                "reference_logprobs needs a LoRA policy (lora_config=...): without an adapter there is no "
                "switched-off copy inside the policy; use the env's ref_model (info['ref_logprobs']) instead"
            )
        peft_model: Any = self.model
        with torch.no_grad(), peft_model.disable_adapter():
            logprobs = LMPolicy.sequence_logprobs(self, input_ids, attention_mask, response_start)
        return cast(torch.Tensor, logprobs)  # without return_entropy: the log-probs alone


class LMActorCriticPolicy(LMPolicy):
    """A causal LM with a scalar value head: PPO uses it.

    Args:
        model, tokenizer, temperature, lora_config, vocab_size: as for :class:`LMPolicy`.
        value_head: ``"shared"`` puts a linear head on the policy's last hidden state (one backbone,
            one forward for log-probs and values); ``"separate"`` gives the critic its own copy of the LM
            body (twice the memory, but value updates never move the policy's weights).
        value_head_init_std: std of the head's initial weights; 0 (the default, as lm-human-preferences)
            starts every value at 0, so the first value-loss gradients do not disturb a shared backbone.
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        tokenizer: Any = None,
        temperature: float = 1.0,
        lora_config: Any = None,
        value_head: Literal["shared", "separate"] = "shared",
        value_head_init_std: float = 0.0,
        vocab_size: int | None = None,
    ) -> None:
        if value_head not in ("shared", "separate"):
            raise ValueError(f"value_head must be 'shared' or 'separate', got {value_head!r}")
        body: Any = _load_model(model)
        # the critic copies the LM body (without the LM head) before any adapter is attached
        critic = copy.deepcopy(getattr(body, "base_model", body)) if value_head == "separate" else None
        super().__init__(body, tokenizer, temperature, lora_config, vocab_size)
        self.value_head_kind = value_head
        self.critic: nn.Module | None = critic.eval().requires_grad_(True) if critic is not None else None
        self.value_head = _value_head(body, value_head_init_std)

    def _values(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)  # (..., H) -> (...)

    def _critic_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        assert self.critic is not None
        out = self.critic(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
        )
        return out.last_hidden_state  # (B, L, H)

    def predict_values(self, obs: Obs) -> torch.Tensor:
        """Values ``(B,)`` of the state at each row's last real column."""
        if self.critic is None:
            hidden = self._next_token(obs, hidden=True)[1]
            assert hidden is not None
            return self._values(hidden)
        ids, mask, _ = obs_to_tensors(obs, self.device)
        ids, mask = right_align(ids, mask)
        return self._values(self._critic_hidden(ids, mask)[:, -1])

    def evaluate_actions(
        self, obs: Obs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.critic is not None:
            values, logprob, entropy = super().evaluate_actions(obs, actions)
            assert values is not None
            return values, logprob, entropy
        logits, hidden = self._next_token(obs, hidden=True)  # one forward for both heads
        assert hidden is not None
        actions = torch.as_tensor(actions, device=logits.device).long().reshape(-1)
        return (
            self._values(hidden),
            token_logprobs(logits, actions, self.temperature),
            token_entropy(logits, self.temperature),
        )

    def sequence_values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> torch.Tensor:
        """Per-token values ``(B, T)``: column ``j`` is the value of the state before response token ``j``
        (the hidden state one column earlier, aligned with the log-probs); 0 where the mask is 0."""
        return self._evaluate_sequence(input_ids, attention_mask, response_start, need_policy=False)[0]

    def evaluate_sequence(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(values, logprobs, entropy)``, each ``(B, T)``; with a shared head, one forward for all three."""
        values, logprobs, entropy = self._evaluate_sequence(input_ids, attention_mask, response_start, True)
        assert logprobs is not None and entropy is not None
        return values, logprobs, entropy

    def _evaluate_sequence(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int, need_policy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        # The value of the state before response token t is read where its logits are: the hidden
        # state of the column that predicts it. A shared head gets both from one forward.
        if self.critic is not None:
            critic = teacher_forced(self.critic, input_ids, attention_mask, response_start, hidden=True)
            assert critic.hidden is not None
            values = critic.per_token(self._values(critic.hidden))  # (B, T)
            if not need_policy:
                return values, None, None
            logprobs, entropy = self.sequence_logprobs(
                input_ids, attention_mask, response_start, return_entropy=True
            )
            return values, logprobs, entropy
        out = teacher_forced(
            self.model, input_ids, attention_mask, response_start, hidden=True, vocab_size=self._vocab_size
        )
        assert out.hidden is not None and out.logits is not None
        values = out.per_token(self._values(out.hidden))  # (B, T)
        if not need_policy:
            return values, None, None
        logprobs = out.per_token(token_logprobs(out.logits, out.targets, self.temperature))
        return values, logprobs, out.per_token(token_entropy(out.logits, self.temperature))
