"""A GPT-2's forward as plain tensor operations, for the two passes a rollout step repeats most.

On a small model a forward is mostly transformers' per-call Python work (the mask builder, the
cache's and the attention interface's dispatch, output dataclasses, module calls) rather than
arithmetic: a decode step of the embedded default model at 16 rows takes about 1.3 ms through
the model and 0.65 ms here (``benchmarks/RESULTS.md``). The operations are the model's own, in
its order, on its own parameters, so the numbers are the model's to rounding; each caller checks
that once per model against the model's forward and otherwise calls the model as before:

- :class:`GPT2DecodeStep`: one new token per row over a transformers KV cache (the vector env's
  decode step, :class:`~textrl_env.decoder.CachedDecoder`);
- :func:`packed_shared_prefix_logits`: the teacher-forced pass of ``k`` samples per prompt (the
  env's scoring and RLOO's and GRPO's update, :func:`~textrl_env.logprobs.teacher_forced`), each
  distinct prompt once and the responses *packed*: the layers' matrix products run on the
  response tokens whose next token is real (the first one of each row, and then the real ones),
  not on the padding after each row's end, and only attention sees them in their ``(B, T)`` grid.

Only a plain ``GPT2LMHeadModel`` qualifies (:func:`plain_gpt2`): anything that changes what a
forward computes (peft adapters or quantised layers, which replace the modules; a DDP or compiled
wrapper; cross-attention) keeps the model's own forward, and so do hooks and active dropout.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def plain_gpt2(model: nn.Module) -> bool:
    """Whether ``model`` is a ``GPT2LMHeadModel`` built of transformers' own GPT-2 modules."""
    try:
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block, GPT2LMHeadModel
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # a transformers without GPT-2 (or with it moved): keep the model's forward
        return False
    if type(model) is not GPT2LMHeadModel:
        return False
    config = model.config
    if getattr(config, "add_cross_attention", False):
        return False
    # The attention here is SDPA's, which is what both of these kernels compute (eager's upcast
    # reordering rounds differently); other kernels (flash, flex) are left to the model.
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if getattr(config, "reorder_and_upcast_attn", False):
        return False
    transformer: Any = model.transformer
    for block in transformer.h:
        attn, mlp = block.attn, block.mlp
        plain = (
            type(block) is GPT2Block
            and type(block.ln_1) is nn.LayerNorm
            and type(block.ln_2) is nn.LayerNorm
            and all(type(m) is Conv1D for m in (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj))
            and isinstance(getattr(attn, "scaling", None), float)
        )
        if not plain:
            return False
    return type(transformer.ln_f) is nn.LayerNorm and type(model.lm_head) is nn.Linear


def unhooked(model: nn.Module) -> bool:
    """Whether no module hook is set (accelerate's device maps, a user's probes change or watch a
    forward; backward hooks see gradients of module outputs the plain passes never make).

    transformers' own output-capturing hooks are not counted: its first forward with
    ``output_hidden_states`` installs them for good, and they only record outputs inside such a call.
    """
    globally = nn.modules.module
    if (
        globally._global_forward_hooks
        or globally._global_forward_pre_hooks
        or globally._global_backward_hooks
        or globally._global_backward_pre_hooks
    ):
        return False
    return not any(
        any(not _captures_outputs(hook) for hook in m._forward_hooks.values())
        or m._forward_pre_hooks
        or m._backward_hooks
        or m._backward_pre_hooks
        for m in model.modules()
    )


def _captures_outputs(hook: Any) -> bool:
    return str(getattr(hook, "__module__", "")).startswith("transformers.utils.output_capturing")


def has_dropout(model: nn.Module) -> bool:
    """Whether some dropout module has p > 0 (then a training-mode forward is random)."""
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())


class GPT2DecodeStep:
    """The logits of one new token per row, appending its keys/values to a transformers cache.

    Args:
        model: a plain ``GPT2LMHeadModel`` (see :func:`plain_gpt2`).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._dropout = has_dropout(model)

    def refresh(self) -> None:
        """Look again at the model's dropout modules (the caller does at each prefill, not each step)."""
        self._dropout = has_dropout(self.model)

    def deterministic(self) -> bool:
        """Whether a forward now is free of dropout (eval mode, or no dropout with p > 0)."""
        return not (self.model.training and self._dropout)

    def prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        """Prompts ``(R, P)``: the last column's logits ``(R, V)`` and a transformers cache of their keys/values."""
        from transformers.cache_utils import DynamicCache

        last, layers = prompt_pass(self.model, input_ids, attention_mask, position_ids)
        cache = DynamicCache()
        for i, (keys, values) in enumerate(layers):
            cache.update(keys, values, i)
        return _head(self.model, last), cache

    def __call__(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        """Logits ``(R, V)`` of ``tokens`` ``(R, 1)`` at ``positions`` ``(R, 1)``.

        ``mask`` is the boolean ``(R, 1, 1, S + 1)`` keep-mask over the cache's slots and the new
        one; ``cache`` (a transformers cache) gets each layer's new keys/values, as a forward would.
        """
        model: Any = self.model
        t = model.transformer
        rows = tokens.shape[0]
        x = (t.wte(tokens) + t.wpe(positions)).view(rows, -1)  # (R, E)
        for i, block in enumerate(t.h):
            q, k, v = _qkv(block, x).view(rows, 3, -1, block.attn.head_dim).unbind(1)  # each (R, H, D)
            keys, values = cache.update(k.unsqueeze(2), v.unsqueeze(2), i)  # (R, H, S + 1, D)
            a = F.scaled_dot_product_attention(
                q.unsqueeze(2), keys, values, attn_mask=mask, scale=block.attn.scaling
            )  # (R, H, 1, D)
            x = _after_attention(block, x, a.reshape(rows, -1))
        return _head(model, x)  # (R, V)


def packed_shared_prefix_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    response_start: int,
    shared: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (N, V), flat (N,))``: the logits that predict each real response token, and where it is.

    ``flat[n]`` is the index into the ``(B, T)`` response (row-major) of the token ``logits[n]``
    predicts; every real token has one row, and so does each row's token 0. The computation is the
    one of :func:`~textrl_env.shared_prefix.shared_prefix_forward`, each distinct prompt once, then
    the responses on top of the prompts' keys/values, but the responses' layers run only on the
    tokens whose next token is real: a token's output depends only on the tokens before it, so a
    row's padding after its end changes nothing that is kept.

    Args:
        model: a plain ``GPT2LMHeadModel`` (:func:`plain_gpt2`), without hooks or active dropout.
        input_ids, attention_mask, position_ids: ``(B, L)``, the prompt in ``[0, response_start)``;
            each row's response mask is one run of ones from its first column (the caller checks).
        response_start: the column where the response begins, >= 1.
        shared: :func:`~textrl_env.shared_prefix.shared_prompts`' ``(first, inverse)``.
    """
    m: Any = model
    first, inverse = shared
    rows, length = input_ids.shape
    n_response = length - response_start
    device = input_ids.device
    last, prefix_cache = prompt_pass(
        m, input_ids[first, :response_start], attention_mask[first, :response_start],
        position_ids[first, :response_start],
    )  # fmt: skip
    prefix_cache = [(k.index_select(0, inverse), v.index_select(0, inverse)) for k, v in prefix_cache]
    # The last prompt column predicts response token 0 of every row of its prompt.
    logits = [_head(m, last).index_select(0, inverse)]  # (B, V)
    flat = [torch.arange(rows, device=device) * n_response]
    if n_response > 1:
        # Column j of the response grid (B, T - 1) predicts response token j + 1: it is needed when
        # that token is real.
        needed = attention_mask[:, response_start + 1 :].bool()  # (B, T - 1)
        grid = needed.reshape(-1).nonzero().squeeze(1)  # (N',) into (B, T - 1), row-major
        logits.append(
            _packed_responses(
                m,
                input_ids,
                position_ids,
                prefix_cache,
                attention_mask[:, :response_start].bool(),
                needed,
                grid,
            )
        )
        flat.append(grid + grid // (n_response - 1) + 1)  # b * T + j + 1
    return torch.cat(logits), torch.cat(flat)


def prompt_pass(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Left-padded prompts ``(U, P)``: the last column's hidden state ``(U, E)`` and each layer's
    keys and values ``(U, H, P, D)`` (what the model's forward would put in its cache)."""
    t: Any = model.transformer
    units, width = input_ids.shape
    keep_mask = attention_mask.bool()
    # Every query also keeps its own column, so a padding query (whose output only padding-masked
    # keys ever read) attends to something and stays finite: no NaN reaches a backward.
    causal = torch.ones(width, width, dtype=torch.bool, device=input_ids.device).tril()
    diagonal = torch.eye(width, dtype=torch.bool, device=input_ids.device)
    keep = ((causal & keep_mask[:, None, :]) | diagonal)[:, None]  # (U, 1, P, P)
    x = (t.wte(input_ids) + t.wpe(position_ids)).reshape(units * width, -1)  # (U P, E)
    cache = []
    for block in t.h:
        q, k, v = _heads(_qkv(block, x), units, width, block.attn.head_dim)  # each (U, H, P, D)
        cache.append((k, v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=block.attn.scaling)
        x = _after_attention(block, x, a.transpose(1, 2).reshape(units * width, -1))
    return x.view(units, width, -1)[:, -1], cache


def _packed_responses(
    m: Any,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    prefix_cache: list[tuple[torch.Tensor, torch.Tensor]],
    prompt_mask: torch.Tensor,
    needed: torch.Tensor,
    packed: torch.Tensor,
) -> torch.Tensor:
    """Logits ``(N', V)`` at the ``needed`` ``(B, T - 1)`` response columns (``packed``: their
    row-major indices), those that predict a real token; ``prompt_mask`` ``(B, P)`` boolean.

    With each response mask one run of ones, the needed columns are also every response key a
    needed column attends to, so they are the only tokens the layers run on.
    """
    t = m.transformer
    rows, cols = needed.shape  # response tokens 0..T-2 predict tokens 1..T-1
    device = input_ids.device
    start = prompt_mask.shape[1]  # the response's first column
    ids = input_ids[:, start:-1].reshape(-1)[packed]
    x = t.wte(ids) + t.wpe(position_ids[:, start:-1].reshape(-1)[packed])  # (N', E)
    causal = torch.ones(cols, cols, dtype=torch.bool, device=device).tril()
    # Unneeded (padding) grid queries keep their own column, as in the prefix: finite outputs,
    # which are dropped, so no NaN reaches the backward.
    own = torch.eye(cols, dtype=torch.bool, device=device)
    response_keep = (causal & needed[:, None, :]) | own  # (B, T - 1, T - 1)
    keep = torch.cat([prompt_mask[:, None, :].expand(-1, cols, -1), response_keep], dim=2)[:, None]
    for block, (prefix_keys, prefix_values) in zip(t.h, prefix_cache, strict=True):
        qkv = _qkv(block, x)  # (N', 3E)
        grid = qkv.new_zeros(rows * cols, qkv.shape[1]).index_copy(0, packed, qkv)  # (B (T - 1), 3E)
        q, k, v = _heads(grid, rows, cols, block.attn.head_dim)  # each (B, H, T - 1, D)
        keys = torch.cat([prefix_keys, k], dim=2)  # (B, H, P + T - 1, D)
        values = torch.cat([prefix_values, v], dim=2)
        a = F.scaled_dot_product_attention(q, keys, values, attn_mask=keep, scale=block.attn.scaling)
        a = a.transpose(1, 2).reshape(rows * cols, -1).index_select(0, packed)  # (N', E)
        x = _after_attention(block, x, a)
    return _head(m, x)


def _qkv(block: Any, x: torch.Tensor) -> torch.Tensor:
    """``(N, 3E)`` queries, keys and values of ``(N, E)`` hidden states (after ``ln_1``)."""
    # Conv1D is x @ W + b with W (in, out): one addmm, as its forward does.
    return torch.addmm(block.attn.c_attn.bias, _layer_norm(block.ln_1, x), block.attn.c_attn.weight)


def _heads(qkv: torch.Tensor, batch: int, length: int, head_dim: int) -> tuple[torch.Tensor, ...]:
    """``(B L, 3E)`` as queries, keys and values, each ``(B, H, L, D)``."""
    return qkv.view(batch, length, 3, -1, head_dim).permute(2, 0, 3, 1, 4).unbind(0)


def _after_attention(block: Any, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The rest of a block on ``(N, E)``: output projection and residual, then the MLP and residual."""
    attn, mlp = block.attn, block.mlp
    x = x + torch.addmm(attn.c_proj.bias, attended, attn.c_proj.weight)
    h = mlp.act(torch.addmm(mlp.c_fc.bias, _layer_norm(block.ln_2, x), mlp.c_fc.weight))
    return x + torch.addmm(mlp.c_proj.bias, h, mlp.c_proj.weight)


def _head(m: Any, x: torch.Tensor) -> torch.Tensor:
    """Logits ``(..., V')`` of the last layer's hidden states: final layer norm, then the LM head."""
    head = m.lm_head
    return F.linear(_layer_norm(m.transformer.ln_f, x), head.weight, head.bias)


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
