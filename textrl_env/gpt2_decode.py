"""One decode step of a GPT-2 model as plain tensor operations, for the vector env's KV-cached rollout.

On a small model a decode step is mostly transformers' per-call Python work (the mask builder,
the cache's and the attention interface's dispatch, output dataclasses, module calls) rather
than arithmetic: about 1.3 ms per token at 16 rows on the embedded default model, of which this
path keeps about half (``benchmarks/RESULTS.md``). It runs the same operations in the same
order on the model's own parameters and cache, so the logits are the model's own; the env
checks them against the model's forward on its first decode step (see
:class:`~textrl_env.decoder.CachedDecoder`) and otherwise calls the model as before.

Only a plain ``GPT2LMHeadModel`` qualifies: anything that changes what a forward computes (peft
adapters or quantised layers, which replace the modules; hooks; active dropout; cross-attention)
keeps the model's own forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def gpt2_decoder(model: nn.Module) -> GPT2DecodeStep | None:
    """A :class:`GPT2DecodeStep` for ``model``, or None when its forward is not plain GPT-2's."""
    try:
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block, GPT2LMHeadModel
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # a transformers without GPT-2 (or with it moved): keep the model's forward
        return None
    if type(model) is not GPT2LMHeadModel or getattr(model.config, "add_cross_attention", False):
        return None
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
            return None
    if type(transformer.ln_f) is not nn.LayerNorm or type(model.lm_head) is not nn.Linear:
        return None
    return GPT2DecodeStep(model)


class GPT2DecodeStep:
    """The logits of one new token per row, appending its keys/values to a transformers cache.

    Args:
        model: a plain ``GPT2LMHeadModel`` (see :func:`gpt2_decoder`, which checks that).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        transformer: Any = model.transformer
        self._transformer = transformer
        self._blocks = list(transformer.h)
        # Dropout makes a training-mode forward random: then only the model's own forward will do.
        self._has_dropout = any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())

    def unhooked(self) -> bool:
        """Whether no forward hook is set (accelerate's device maps, a user's probes change or watch a forward)."""
        globally = nn.modules.module
        if globally._global_forward_hooks or globally._global_forward_pre_hooks:
            return False
        return not any(m._forward_hooks or m._forward_pre_hooks for m in self.model.modules())

    def deterministic(self) -> bool:
        """Whether a forward now is free of dropout (eval mode, or no dropout with p > 0)."""
        return not (self.model.training and self._has_dropout)

    def __call__(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        """Logits ``(R, V)`` of ``tokens`` ``(R, 1)`` at ``positions`` ``(R, 1)``.

        ``mask`` is the boolean ``(R, 1, 1, S + 1)`` keep-mask over the cache's slots and the new
        one; ``cache`` (a transformers cache) gets each layer's new keys/values, as a forward would.
        """
        t = self._transformer
        rows = tokens.shape[0]
        x = t.wte(tokens) + t.wpe(positions)  # (R, 1, E)
        x = x.view(rows, -1)  # (R, E)
        for i, block in enumerate(self._blocks):
            attn, mlp = block.attn, block.mlp
            h = _layer_norm(block.ln_1, x)
            # Conv1D is x @ W + b with W (in, out): one addmm, as its forward does.
            qkv = torch.addmm(attn.c_attn.bias, h, attn.c_attn.weight)  # (R, 3E)
            q, k, v = qkv.view(rows, 3, -1, attn.head_dim).unbind(1)  # each (R, H, D)
            keys, values = cache.update(k.unsqueeze(2), v.unsqueeze(2), i)  # (R, H, S + 1, D)
            a = F.scaled_dot_product_attention(
                q.unsqueeze(2), keys, values, attn_mask=mask, scale=attn.scaling
            )  # (R, H, 1, D)
            x = x + torch.addmm(attn.c_proj.bias, a.reshape(rows, -1), attn.c_proj.weight)
            h = mlp.act(torch.addmm(mlp.c_fc.bias, _layer_norm(block.ln_2, x), mlp.c_fc.weight))
            x = x + torch.addmm(mlp.c_proj.bias, h, mlp.c_proj.weight)
        x = _layer_norm(t.ln_f, x)
        head: Any = self.model.lm_head
        return F.linear(x, head.weight, head.bias)  # (R, V)


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
