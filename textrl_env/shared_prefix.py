"""A teacher-forced forward that runs each distinct prompt once, for batches of k samples per prompt.

RLOO and GRPO draw ``k`` responses to every prompt, so a batch of ``B`` rows holds ``B / k``
distinct prompts, each ``k`` times. A plain teacher-forced pass computes every prompt ``k`` times,
in the reference pass and again, with gradients, in the update. Causal attention means a prompt's
keys and values do not depend on the response that follows it, so this forward computes them once
per distinct prompt, gives every row its prompt's copy (``index_select``, which autograd sums back
over the copies: the gradient is the one of the full pass), and runs only the responses on top of
that cache. The work on the prompt shrinks ``k``-fold; everything else is the same computation.

Exact when the prompt's forward is a function of the prompt alone: not with dropout active in
training mode (the ``k`` copies would share one dropout mask), so such models keep the full pass.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import torch
from torch import nn

from textrl_env.gpt2_plain import packed_shared_prefix_logits, plain_gpt2, unhooked
from textrl_env.kv_cache import cache_keyword, distinct_rows, output_cache, select_rows
from textrl_env.token_math import real_vocab_logits

# Switch for benchmarks (benchmarks/RESULTS.md): TEXTRL_SHARED_PREFIX=0 always runs the full pass.
SHARED_PREFIX = os.environ.get("TEXTRL_SHARED_PREFIX", "1") != "0"
# Switch for benchmarks: TEXTRL_PACKED=0 always runs transformers' forward for the shared-prefix pass.
PACKED = os.environ.get("TEXTRL_PACKED", "1") != "0"

# Per model: whether the packed plain-GPT-2 pass gave the model's own logits on its first batch.
_packed_ok: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _dropout_active(model: nn.Module) -> bool:
    """Dropout in training mode, as modules or as the attention's own ``attention_dropout``."""
    modules = list(model.modules())
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0 for m in modules):
        return True
    config = getattr(model, "config", None)
    return model.training and float(getattr(config, "attention_dropout", 0) or 0) > 0


def _cannot_share(model: nn.Module) -> bool:
    """Models the two-forward path does not fit (they keep the one full pass):

    - gradient checkpointing in training mode: transformers then returns no cache;
    - parameters sharded by FSDP2 (DTensors): every rank must run the same number of forwards,
      and whether prompts repeat is each rank's own data;
    - peft's prompt learning: its virtual tokens would be prepended to the response forward too.
    """
    if (
        model.training
        and torch.is_grad_enabled()
        and any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    ):
        return True
    first = next(model.parameters(), None)
    if first is not None and type(first).__name__ == "DTensor":
        return True
    peft_config = getattr(model, "peft_config", None)
    return isinstance(peft_config, dict) and any(
        getattr(c, "is_prompt_learning", False) for c in peft_config.values()
    )


def shared_prompts(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(first, inverse)`` of the distinct prompts (see :func:`~textrl_env.kv_cache.distinct_rows`)
    when sharing them pays (at most half as many distinct prompts as rows) and is exact; else None."""
    if not SHARED_PREFIX or input_ids.shape[0] < 2 or input_ids.shape[1] <= response_start:
        return None
    if _dropout_active(model) or _cannot_share(model):
        return None
    shared = distinct_rows(input_ids[:, :response_start], attention_mask[:, :response_start])
    if shared is None or 2 * shared[0].shape[0] > input_ids.shape[0]:
        return None
    return shared


def shared_prefix_forward(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    response_start: int,
    shared: tuple[torch.Tensor, torch.Tensor],
    hidden: bool,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, hidden)`` ``(B, T, V)``/``(B, T, H)`` at the columns that predict the ``T`` response tokens.

    Args:
        model: a transformers causal LM (it takes a KV cache and returns logits).
        input_ids, attention_mask, position_ids: ``(B, L)``, the prompt in ``[0, response_start)``.
        response_start: the column where the response begins.
        shared: :func:`shared_prompts`' ``(first, inverse)``.
        hidden: also return the last layer's hidden states.
        vocab_size: keep the logits of the first ``vocab_size`` ids only (a padded vocabulary).
    """
    first, inverse = shared
    extra: dict[str, Any] = {"output_hidden_states": True} if hidden else {}
    prefix = model(
        input_ids=input_ids[first, :response_start],
        attention_mask=attention_mask[first, :response_start],
        position_ids=position_ids[first, :response_start],
        use_cache=True,
        logits_to_keep=1,  # the last prompt column predicts the first response token
        **extra,
    )
    logits = [real_vocab_logits(prefix.logits[:, -1:], vocab_size)[inverse]]  # (B, 1, V)
    states = [prefix.hidden_states[-1][:, -1:][inverse]] if hidden else []
    if input_ids.shape[1] - response_start > 1:  # response tokens 0..T-2 predict tokens 1..T-1
        cache = output_cache(prefix)
        select_rows(cache, inverse)
        rest = model(
            input_ids=input_ids[:, response_start:-1],
            attention_mask=attention_mask[:, :-1],
            position_ids=position_ids[:, response_start:-1],
            use_cache=True,
            **{cache_keyword(model): cache},
            **extra,
        )
        logits.append(real_vocab_logits(rest.logits, vocab_size))
        if hidden:
            states.append(rest.hidden_states[-1])
    return torch.cat(logits, dim=1), torch.cat(states, dim=1) if hidden else None


def packs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    shared: tuple[torch.Tensor, torch.Tensor],
) -> bool:
    """Whether :func:`~textrl_env.gpt2_plain.packed_shared_prefix_logits` computes this pass exactly.

    For a plain GPT-2 without hooks (:func:`shared_prompts` has ruled out active dropout), when
    every row's response mask is one run of ones from its first column (the env's responses are:
    1 up to and including EOS). The first time for a model, both passes run on this batch and
    the packed one is kept only if its logits are the model's to rounding.
    """
    if not PACKED or _packed_ok.get(model) is False or not plain_gpt2(model) or not unhooked(model):
        return False
    response = attention_mask[:, response_start:]
    if not bool((response[:, 1:] <= response[:, :-1]).all()):  # a hole, or a response that starts late
        return False
    if model in _packed_ok:
        return _packed_ok[model]
    agrees = _packed_agrees(model, input_ids, attention_mask, response_start, shared)
    # A batch of one-token responses never runs the packed response layers: it proves only itself.
    if not agrees or bool(attention_mask[:, response_start + 1 :].any()):
        _packed_ok[model] = agrees
    return agrees


@torch.no_grad()
def _packed_agrees(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    shared: tuple[torch.Tensor, torch.Tensor],
) -> bool:
    """Whether the packed pass's logits on this batch are the model's forward's, to rounding."""
    # logprobs.position_ids_from_mask's rule (that module imports this one)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    reference, _ = shared_prefix_forward(
        model, input_ids, attention_mask, positions, response_start, shared, hidden=False
    )  # (B, T, V)
    try:
        packed, flat = packed_shared_prefix_logits(
            model, input_ids, attention_mask, positions, response_start, shared
        )
        torch.testing.assert_close(packed, reference.reshape(-1, reference.shape[-1])[flat])
    except (RuntimeError, ValueError, TypeError, AssertionError):
        return False
    return True
