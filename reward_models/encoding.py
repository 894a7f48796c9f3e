"""The one prompt encoder: how every part of textrl turns a prompt string into token ids.

The env's prompt window, SFT's prompts, the prompts preference pairs are sampled from, and the
texts a learned reward model scores all start the same way, so the model sees one layout from
supervised fine-tuning to RL to reward modelling:

- the special tokens the tokenizer itself puts *before* a text (what ``add_special_tokens=True``
  adds at the start: a BOS for Llama, Mistral or Gemma tokenizers, nothing for GPT-2 or Qwen), as
  the model saw them in pre-training;
- then the prompt's own tokens;
- never a special token the tokenizer's template puts *after* a text (an EOS or SEP): a prompt is
  continued, not ended.

A completion or response that follows a prompt is encoded with no special tokens at all
(:func:`encode_continuation`). The rule lives in ``reward_models`` because that package imports
nothing from the others, so the env (``textrl_env``) and the agents can both use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Text the leading special tokens are read from: a plain word every tokenizer encodes to >= 1 token.
_PROBE = "a"


def leading_special_tokens(tokenizer: Any) -> list[int]:
    """The ids ``tokenizer`` adds before a text when asked for its special tokens (e.g. ``[BOS]``).

    Read from the tokenizer itself, by encoding a probe text with and without special tokens, so
    it follows whatever post-processor or ``add_bos_token`` setting the tokenizer has. Ids the
    template appends after the text (an EOS) are not included.

    Args:
        tokenizer: any Hugging Face tokenizer (callable, returning ``{"input_ids": [...]}``).

    Returns:
        The leading ids, often ``[]`` (GPT-2) or ``[bos_token_id]`` (Llama).
    """
    full = list(tokenizer(_PROBE, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    if plain:
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start]
    # The probe's tokens changed with special tokens on (unusual): keep the leading run of special ids.
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    count = 0
    while count < len(full) and full[count] in special:
        count += 1
    return full[:count]


def _check_prompt(prompt: object, index: int | None = None) -> str:
    if not isinstance(prompt, str):
        which = "a prompt" if index is None else f"prompt {index}"
        raise TypeError(f"{which} must be a str, got {type(prompt).__name__}: {prompt!r}")
    return prompt


def truncate_left(ids: list[int], max_tokens: int | None, keep_first: int = 0) -> list[int]:
    """Cut ``ids`` from the left to at most ``max_tokens``, keeping its first ``keep_first`` ids.

    Used with ``keep_first=len(leading_special_tokens(tokenizer))`` so a BOS survives the cut: the
    model never saw a text that starts without it.

    Raises:
        ValueError: ``max_tokens`` is below 1.
    """
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens!r}")
    if max_tokens is None or len(ids) <= max_tokens:
        return ids
    keep = max_tokens - keep_first
    return ids[:keep_first] + ids[len(ids) - keep :] if keep > 0 else ids[:max_tokens]


def encode_prompts(tokenizer: Any, prompts: Sequence[str], max_tokens: int | None = None) -> list[list[int]]:
    """Token ids of each prompt under the one special-token rule (see the module docstring).

    Args:
        tokenizer: any Hugging Face tokenizer.
        prompts: the prompt strings; an empty prompt encodes to the leading special tokens alone
            (``[]`` for a tokenizer that adds none: callers decide what an empty prompt means).
        max_tokens: keep at most this many ids: the leading special tokens and the prompt's last
            tokens (None: all).

    Returns:
        One list of ids per prompt.

    Raises:
        TypeError: a prompt is not a ``str``.
    """
    texts = [_check_prompt(p, i) for i, p in enumerate(prompts)]
    if not texts:
        return []
    prefix = leading_special_tokens(tokenizer)
    bodies = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [truncate_left(prefix + list(body), max_tokens, len(prefix)) for body in bodies]


def encode_prompt(tokenizer: Any, prompt: str, max_tokens: int | None = None) -> list[int]:
    """:func:`encode_prompts` of one prompt."""
    return encode_prompts(tokenizer, [_check_prompt(prompt)], max_tokens)[0]


def encode_continuation(tokenizer: Any, text: str) -> list[int]:
    """Token ids of text that follows a prompt (a response or completion): no special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
