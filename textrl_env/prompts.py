"""Turning prompt strings into the fixed, left-padded token layout every textrl env uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def tokenize_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of one prompt (no special tokens added), with a clear error for empty prompts."""
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a str, got {type(prompt).__name__}: {prompt!r}")
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"prompt {prompt!r} encodes to no tokens; give at least one token of text")
    return list(ids)


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
    for i, prompt in enumerate(prompts):
        tokens = tokenize_prompt(tokenizer, prompt)
        check_prompt_length(prompt, len(tokens), prompt_length)
        ids[i, prompt_length - len(tokens) :] = torch.tensor(tokens)
        mask[i, prompt_length - len(tokens) :] = 1
    return ids, mask
