"""Turning prompt strings into the fixed, left-padded token layout every textrl env uses.

The ids come from :mod:`reward_models.encoding`, the one prompt encoder SFT, preference pairs and
the learned reward model share: the tokenizer's leading special tokens (a BOS where it adds one),
then the prompt's tokens, never an appended EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reward_models.encoding import encode_prompts as encode_prompt_ids


def tokenize_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, with a clear error for a prompt that encodes to no tokens."""
    encoded = encode_prompt_ids(tokenizer, prompts)
    for prompt, ids in zip(prompts, encoded, strict=True):
        if not ids:
            raise ValueError(f"prompt {prompt!r} encodes to no tokens; give at least one token of text")
    return encoded


def tokenize_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of one prompt (see :func:`tokenize_prompts`)."""
    return tokenize_prompts(tokenizer, [prompt])[0]


def check_prompt_length(prompt: str, n_tokens: int, prompt_length: int) -> None:
    """Raise when a prompt does not fit the env's prompt window."""
    if n_tokens > prompt_length:
        raise ValueError(
            f"prompt {prompt!r} is {n_tokens} tokens, longer than the env's prompt window of {prompt_length} "
            "tokens; shorten the prompt or build the env with a larger max_prompt_tokens "
            "(prompt window + max_new_tokens must fit the model's context)"
        )


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str], prompt_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad every prompt to ``prompt_length``: ``(ids, mask)``, both int64 ``(N, prompt_length)``."""
    pad = tokenizer.pad_token_id
    ids = torch.full((len(prompts), prompt_length), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), prompt_length), dtype=torch.long)
    for i, (prompt, tokens) in enumerate(zip(prompts, tokenize_prompts(tokenizer, prompts), strict=True)):
        check_prompt_length(prompt, len(tokens), prompt_length)
        ids[i, prompt_length - len(tokens) :] = torch.tensor(tokens)
        mask[i, prompt_length - len(tokens) :] = 1
    return ids, mask
