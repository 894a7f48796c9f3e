"""Turning text into one scalar with a sequence-classification model, shared by scoring and training.

Decoder models (GPT-2, Llama, Qwen, ... -- anything whose classification head is called ``score``
and runs over every token) are read at the last token whose attention mask is 1. The index comes
from the mask, not from searching for pad ids, so left and right padding give the same scores and
a pad id equal to EOS does not hide a real final EOS. Encoder models (BERT-style, pooling the first
token) go through their own forward.

Decoder models read the prompt as the env, SFT and preference pairs encode it (the one prompt
encoder, :mod:`reward_models.encoding`), then the completion's tokens, then an EOS to score at.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from reward_models.encoding import encode_prompts, leading_special_tokens, truncate_left


def check_single_label(model: nn.Module) -> None:
    """Raise unless ``model`` is a sequence classifier with exactly one output (a scalar reward)."""
    config = getattr(model, "config", None)
    num_labels = getattr(config, "num_labels", None)
    if num_labels != 1:
        raise ValueError(
            f"{type(model).__name__} has num_labels={num_labels}; a reward model needs exactly one output. "
            "Load it with AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)"
        )


def pad_id(tokenizer: Any) -> int:
    """The id used to fill padded positions: the tokenizer's pad token, else its EOS.

    Padding is on the right and masked, so the value never reaches a score; it only has to exist.
    """
    for attribute in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attribute, None)
        if isinstance(value, int):
            return value
    raise ValueError(
        f"tokenizer {type(tokenizer).__name__} has neither a pad nor an EOS token, so batches cannot be "
        "padded; set one, e.g. tokenizer.pad_token = tokenizer.eos_token or tokenizer.add_special_tokens(...)"
    )


def is_decoder_head(model: nn.Module) -> bool:
    """True for models whose classification head (``score``) runs over every token's hidden state."""
    return (
        isinstance(getattr(model, "score", None), nn.Module)
        and getattr(model, "base_model", model) is not model
    )


def right_pad(
    rows: Sequence[list[int]], fill: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of shape ``(B, T)`` on ``device``; an empty row keeps one position."""
    # An empty text (e.g. an empty prompt and completion) still needs one position to read a score at.
    rows = [ids if ids else [fill] for ids in rows]
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), fill, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)


def _end_with_eos(rows: list[list[int]], tokenizer: Any) -> list[list[int]]:
    """Append the tokenizer's EOS to every row that does not already end with it (no-op without an EOS)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if not isinstance(eos, int):
        return rows
    # Score at an EOS, as reward models usually are: the last position then holds the same token
    # for every text, so the score reads what attention gathered, not the identity of the last word.
    return [ids if ids and ids[-1] == eos else [*ids, eos] for ids in rows]


def tokenize_texts(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    device: torch.device | str,
    keep_end: bool = True,
    append_eos: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize whole ``texts`` with the tokenizer's own special-token template and right-pad them.

    This is the encoder-model path (a BERT-style classifier was trained with its ``[CLS] ... [SEP]``
    template); decoder reward models read prompts through the one prompt encoder instead, see
    :func:`encode_completions_for_scoring`.

    Args:
        tokenizer: any Hugging Face tokenizer (its own padding side is ignored).
        texts: the strings to score (prompt + completion).
        max_length: longest sequence kept.
        device: where the tensors go.
        keep_end: truncate from the left, keeping the last ``max_length`` tokens (the end of the
            completion, where decoder models read the score); False keeps the start (for encoders
            that pool their first token).
        append_eos: end every text with the tokenizer's EOS token (unless it already ends with one);
            a no-op for tokenizers without an EOS.

    Returns:
        Two int64 tensors of shape ``(B, T)``; every row has at least one token.
    """
    encoded = [list(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    if append_eos:
        encoded = _end_with_eos(encoded, tokenizer)
    rows = [ids[-max_length:] if keep_end else ids[:max_length] for ids in encoded]
    return right_pad(rows, pad_id(tokenizer), device)


def encode_completions_for_scoring(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    max_length: int,
    device: torch.device | str,
    append_eos: bool = True,
    separator: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of ``(B, T)``: each prompt, ``separator`` and completion, as ``model`` reads them.

    Decoder heads read the prompt exactly as the env, SFT and preference pairs encode it
    (:func:`~reward_models.encoding.encode_prompts`: the tokenizer's leading special tokens, then the
    prompt), followed by ``separator + completion`` without special tokens (the layout the policy
    generated in) and, with ``append_eos``, an EOS to score at. A text longer than ``max_length``
    keeps its leading special tokens and its end. Encoders (pooling their first token) get the whole
    text with their tokenizer's own template, cut at the end, and no extra EOS.
    """
    if len(prompts) != len(completions):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(completions)} completions; pass one prompt per completion"
        )
    if not is_decoder_head(model):
        texts = [p + separator + c for p, c in zip(prompts, completions, strict=True)]
        return tokenize_texts(tokenizer, texts, max_length, device, keep_end=False)
    n_leading = len(leading_special_tokens(tokenizer))
    tails = tokenizer([separator + c for c in completions], add_special_tokens=False)["input_ids"]
    rows = [head + list(tail) for head, tail in zip(encode_prompts(tokenizer, prompts), tails, strict=True)]
    if append_eos:
        rows = _end_with_eos(rows, tokenizer)
    rows = [truncate_left(ids, max_length, n_leading) for ids in rows]
    return right_pad(rows, pad_id(tokenizer), device)


def encode_for_scoring(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    device: torch.device | str,
    append_eos: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_completions_for_scoring` of whole texts (each read as a prompt with no completion)."""
    return encode_completions_for_scoring(
        model, tokenizer, texts, [""] * len(texts), max_length, device, append_eos
    )


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` index of the last position with attention mask 1, for left or right padding."""
    if bool((attention_mask.sum(dim=1) == 0).any()):
        raise ValueError("a row of attention_mask is all zero; every sequence needs at least one token")
    # cumsum peaks first at the last 1, and argmax returns the first peak.
    return attention_mask.long().cumsum(dim=1).argmax(dim=1)


def sequence_scores(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` float32 scalar scores, with gradients if enabled by the caller.

    For decoder heads, position ids are counted from the mask so a left-padded row sees the same
    positions as an unpadded one.
    """
    if not is_decoder_head(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, 1)
        return logits.squeeze(-1).float()
    base: Any = model.base_model
    head: Any = model.score
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    parameters = inspect.signature(base.forward).parameters
    if "position_ids" in parameters:
        kwargs["position_ids"] = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
    if "use_cache" in parameters:
        kwargs["use_cache"] = False
    outputs = base(**kwargs)
    hidden = outputs[0]  # (B, T, H) last hidden state
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    pooled = hidden[rows, last_token_index(attention_mask).to(hidden.device)]  # (B, H)
    return head(pooled).squeeze(-1).float()  # (B,)
