"""Preference pairs without a human: two samples per prompt from a causal LM, ranked by a gold reward.

This is how the pipeline bootstraps a learned reward model offline: sample from the starting
policy, let a gold scorer (e.g. :class:`~reward_models.functions.SentimentReward`) pick the better
completion of each pair, and train on the result. Works on any Hugging Face causal LM and tokenizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from reward_models.checks import check_positive_ints
from reward_models.encoding import encode_prompts
from reward_models.preferences import PreferencePair
from reward_models.protocol import RewardModel, compute_rewards, resolve_reward, reward_name
from reward_models.scoring import pad_id


def _left_padded(
    tokenizer: Any, prompts: Sequence[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of ``(B, T)``, left-padded so every prompt ends at the same column.

    Prompts go through the one prompt encoder the env and SFT use
    (:func:`~reward_models.encoding.encode_prompts`), so pairs are sampled from the prompt layout the
    policy is trained on. Empty prompts become a single BOS (or EOS) token. Padding by hand leaves the user's tokenizer (and its ``padding_side``)
    untouched.
    """
    encoded = encode_prompts(tokenizer, prompts)
    fill = pad_id(tokenizer)
    # An empty prompt still needs one token to condition on: the BOS (GPT-2 style: its EOS).
    start = getattr(tokenizer, "bos_token_id", None)
    start = start if isinstance(start, int) else getattr(tokenizer, "eos_token_id", None)
    if isinstance(start, int):
        encoded = [ids if ids else [start] for ids in encoded]
    width = max(1, *(len(ids) for ids in encoded))
    input_ids = torch.full((len(encoded), width), fill, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)  # (B, T)
    for i, ids in enumerate(encoded):
        if ids:
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _decode_completions(tokenizer: Any, new_tokens: torch.Tensor) -> list[str]:
    """Decode ``(N, T_new)`` generated ids, cutting each row at its first EOS."""
    eos = getattr(tokenizer, "eos_token_id", None)
    rows = []
    for row in new_tokens.tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        rows.append(row)
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


def sample_pairs_of_completions(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float,
    device: torch.device,
) -> tuple[list[str], list[str]]:
    """Two sampled completions per prompt (uses the global RNG; seed it around the call)."""
    input_ids, attention_mask = _left_padded(tokenizer, prompts, device)  # (B, T)
    generated = model.generate(  # type: ignore[operator]
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        num_return_sequences=2,
        pad_token_id=pad_id(tokenizer),
    )  # (2B, T + new), rows 2i and 2i + 1 belong to prompt i
    texts = _decode_completions(tokenizer, generated[:, input_ids.shape[1] :])
    return texts[0::2], texts[1::2]


def generate_preference_pairs(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    gold_reward: RewardModel,
    n_pairs: int,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    min_margin: float = 0.05,
    batch_size: int = 32,
    max_rounds: int = 100,
) -> list[PreferencePair]:
    """Sample two completions per prompt and label them chosen/rejected by ``gold_reward``.

    Prompts are used in a seeded random order, cycling as often as needed. A pair is kept only if
    the gold scores differ by at least ``min_margin`` -- ties and near-ties carry no reliable
    preference, and learning from them would teach the reward model noise -- and both completions
    are non-empty.

    Args:
        model: a causal LM with ``generate`` (e.g. ``AutoModelForCausalLM``); put in eval mode.
        tokenizer: its tokenizer; prompts are left-padded by hand, the tokenizer is not changed.
        prompts: the prompts to continue.
        gold_reward: the judge, any reward meeting the protocol (e.g. ``SentimentReward()``).
        n_pairs: how many pairs to return.
        max_new_tokens: length limit of each completion.
        temperature: sampling temperature (> 0); higher gives more varied, more separable pairs.
        seed: makes the result reproducible; the caller's global RNG state is restored afterwards.
        device: where to generate; None uses the model's device.
        min_margin: smallest gold-score gap that counts as a preference (>= 0).
        batch_size: prompts per ``generate`` call (each yields two samples).
        max_rounds: ``generate`` calls before giving up.

    Returns:
        ``n_pairs`` :class:`PreferencePair` objects.

    Raises:
        ValueError: bad arguments, or fewer than ``n_pairs`` usable pairs after ``max_rounds``
            batches (lower ``min_margin`` or raise ``temperature``).
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty; pass at least one prompt to sample completions for")
    check_positive_ints(n_pairs=n_pairs, max_new_tokens=max_new_tokens, batch_size=batch_size)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature={temperature!r} is invalid; expected a finite number > 0")
    if not (math.isfinite(min_margin) and min_margin >= 0):
        raise ValueError(f"min_margin={min_margin!r} is invalid; expected a finite number >= 0")
    gold = resolve_reward(gold_reward)  # textrl's or TRL's calling convention, decided once
    target = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(target)
    model.eval()
    devices = [target.index or 0] if target.type == "cuda" else []
    pairs: list[PreferencePair] = []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        order = torch.randperm(len(prompts)).tolist()
        cursor = 0
        for _ in range(max_rounds):
            batch = [prompts[order[(cursor + i) % len(prompts)]] for i in range(batch_size)]
            cursor += batch_size
            first, second = sample_pairs_of_completions(
                model, tokenizer, batch, max_new_tokens, temperature, target
            )
            scores = compute_rewards(gold, batch + batch, first + second)  # (2B,)
            gap = scores[: len(batch)] - scores[len(batch) :]  # (B,) first minus second
            for prompt, a, b, d in zip(batch, first, second, gap.tolist(), strict=True):
                if abs(d) < min_margin or not a.strip() or not b.strip():
                    continue
                chosen, rejected = (a, b) if d > 0 else (b, a)
                pairs.append(PreferencePair(prompt, chosen, rejected))
                if len(pairs) == n_pairs:
                    return pairs
    raise ValueError(
        f"found only {len(pairs)} of {n_pairs} pairs whose {reward_name(gold_reward)!r} scores differ by at least "
        f"min_margin={min_margin} in {max_rounds} batches of {batch_size}; lower min_margin, raise temperature "
        "or max_rounds, or use prompts that lead to more varied completions"
    )
