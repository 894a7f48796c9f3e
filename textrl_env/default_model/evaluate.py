"""Check the default model on what the RL tasks rely on, through the plain ``from_pretrained`` path.

Measures the VADER sentiment of sampled review completions (should start near 0 with a wide spread,
so an agent can raise it) and greedy exact match on ``a+b=`` (should be partial, so an agent can
improve it). ``python -m textrl_env.default_model.build`` runs it after saving unless ``--eval-samples 0``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from textrl_env.default_model.corpus import (
    HELDOUT_SENTIMENT_PROMPTS,
    SENTIMENT_PROMPTS,
    arithmetic_answer,
    arithmetic_prompts,
)

console = Console()


def _generate(
    model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], **generate_kwargs: Any
) -> tuple[list[str], list[bool]]:
    """Completions of ``prompts`` (special tokens removed) and whether each one emitted EOS."""
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True)  # left-padded
    with torch.no_grad():
        output = model.generate(**batch, pad_token_id=tokenizer.pad_token_id, **generate_kwargs)
    new_tokens = output[:, batch["input_ids"].shape[1] :]  # (B, new)
    texts = [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return texts, (new_tokens == tokenizer.eos_token_id).any(dim=1).tolist()


def sentiment_stats(
    model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], n_samples: int, seed: int
) -> dict[str, Any]:
    """VADER compound statistics of sampled completions (max 16 new tokens), cycling over ``prompts``."""
    chosen = [prompts[i % len(prompts)] for i in range(n_samples)]
    torch.manual_seed(seed)
    texts, ended = _generate(model, tokenizer, chosen, do_sample=True, max_new_tokens=16, top_k=0)
    analyzer = SentimentIntensityAnalyzer()
    scores = [analyzer.polarity_scores(text)["compound"] for text in texts]
    return {
        "n": n_samples,
        "mean": statistics.fmean(scores),
        "std": statistics.pstdev(scores),
        "frac_above_0.5": sum(s > 0.5 for s in scores) / n_samples,
        "frac_below_-0.5": sum(s < -0.5 for s in scores) / n_samples,
        "eos_rate": sum(ended) / n_samples,
        "examples": [f"{p} | {t}" for p, t in zip(chosen[:8], texts[:8], strict=True)],
    }


def arithmetic_stats(
    model: Any, tokenizer: PreTrainedTokenizerBase, n_prompts: int, seed: int
) -> dict[str, Any]:
    """Greedy exact match on ``a+b=`` prompts; a hit must also stop with EOS."""
    prompts = arithmetic_prompts(n_prompts, seed=seed)
    answers = [arithmetic_answer(p) for p in prompts]
    texts, ended = _generate(model, tokenizer, prompts, do_sample=False, max_new_tokens=4)
    torch.manual_seed(seed)
    sampled, sampled_ended = _generate(model, tokenizer, prompts, do_sample=True, top_k=0, max_new_tokens=4)

    def exact(outputs: list[str], stops: list[bool]) -> float:
        return sum(o == a and s for o, a, s in zip(outputs, answers, stops, strict=True)) / n_prompts

    return {
        "n": n_prompts,
        "exact_match": exact(texts, ended),
        "sampled_exact_match": exact(sampled, sampled_ended),  # what an RL agent starts from
        "digits_then_eos": sum(t.isdigit() and e for t, e in zip(texts, ended, strict=True)) / n_prompts,
        "examples": [f"{p}{t}" for p, t in zip(prompts[:8], texts[:8], strict=True)],
    }


def evaluate(path: str | Path, seed: int = 0, n_samples: int = 1024) -> dict[str, Any]:
    """Load ``path`` through ``from_pretrained`` and measure what the RL tasks rely on.

    Args:
        path: A folder written by this build (or any compatible checkpoint).
        seed: Seeds the sampled completions and the arithmetic prompts.
        n_samples: Number of sampled review completions per prompt set; half as many arithmetic
            prompts are answered.

    Returns:
        ``{"sentiment": ..., "sentiment_heldout": ..., "arithmetic": ...}`` with VADER statistics of
        completions of the training and held-out openers, and greedy arithmetic exact match.
    """
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return {
        "sentiment": sentiment_stats(model, tokenizer, SENTIMENT_PROMPTS, n_samples, seed),
        "sentiment_heldout": sentiment_stats(
            model, tokenizer, HELDOUT_SENTIMENT_PROMPTS, n_samples, seed + 1
        ),
        "arithmetic": arithmetic_stats(model, tokenizer, max(1, n_samples // 2), seed + 2),
    }


def print_report(info: dict[str, Any]) -> None:
    """A rich table of the evaluation, with a warning where a number is outside its target."""
    table = Table(title="default model check")
    for column in ("check", "value", "target"):
        table.add_column(column)
    evaluation = info["evaluation"]
    rows = []
    for key in ("sentiment", "sentiment_heldout"):
        stats = evaluation[key]
        rows += [
            (f"{key} VADER mean", stats["mean"], "|x| <= 0.15", abs(stats["mean"]) <= 0.15),
            (f"{key} VADER std", stats["std"], ">= 0.3", stats["std"] >= 0.3),
            (f"{key} EOS before 16 tokens", stats["eos_rate"], ">= 0.8", stats["eos_rate"] >= 0.8),
        ]
    exact = evaluation["arithmetic"]["exact_match"]
    rows.append(("arithmetic greedy exact match", exact, "0.2 .. 0.6", 0.2 <= exact <= 0.6))
    sampled = evaluation["arithmetic"]["sampled_exact_match"]
    rows.append(("arithmetic sampled exact match", sampled, "< 0.8", sampled < 0.8))
    for name, value, target, ok in rows:
        table.add_row(name, f"{value:.3f}", target if ok else f"[yellow]{target} (missed)[/yellow]")
    console.print(table)
    for line in evaluation["sentiment"]["examples"] + evaluation["arithmetic"]["examples"]:
        console.print(f"  {line}", markup=False)
