"""Teacher-forced log-probabilities of a response under a causal LM.

One function shared by the environments (scoring a finished episode), the agents (old and new
log-probs in the update) and SFT, so every part of textrl measures log-probs the same way:
position ids from the attention mask (left padding), logits divided by the sampling temperature
before the log-softmax, and nothing computed for the prompt's own tokens.
"""

from __future__ import annotations

import torch
from torch import nn


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding: 0 at the first real token of each row."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
) -> torch.Tensor:
    """Logits that predict each response token, ``(B, L - response_start, V)``.

    The logit at column ``j`` predicts token ``j + 1``, so the response tokens
    ``input_ids[:, response_start:]`` are predicted by columns ``response_start - 1 .. L - 2``.
    """
    if response_start < 1:
        raise ValueError(f"response_start must be >= 1 (a response needs a prompt), got {response_start}")
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    )
    return out.logits[:, response_start - 1 : -1]  # (B, T, V)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log_softmax(logits / temperature)`` gathered at ``tokens``: ``(B, T, V), (B, T) -> (B, T)``."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    # logsumexp + gather avoids materialising a second (B, T, V) tensor for log_softmax.
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(logits, dim=-1)


def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log-probs of the response tokens ``input_ids[:, response_start:]`` under ``model``.

    Args:
        model: a causal LM returning ``.logits``.
        input_ids: ``(B, L)`` left-padded prompt followed by the response.
        attention_mask: ``(B, L)`` 1 on real tokens; response positions with 0 come back as 0.
        response_start: column where the response begins (the padded prompt length).
        temperature: the sampling temperature the tokens were drawn with.

    Returns:
        ``(B, L - response_start)`` float32 log-probabilities, 0 where the mask is 0.
    """
    logits = response_logits(model, input_ids, attention_mask, response_start)
    tokens = input_ids[:, response_start:]
    mask = attention_mask[:, response_start:]
    return token_logprobs(logits, tokens, temperature) * mask
