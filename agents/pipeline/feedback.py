"""A round's feedback: sample pairs from the current policy, label them, retrain the reward model.

The reward model is retrained each round on all labelled pairs so far, from the SFT model with a
fresh one-output head (as in Stiennon et al. 2020 and InstructGPT): it starts from features of the
very text the policy writes, and it works for any causal LM a user starts from. (The shipped
reward model of ``textrl/Preference-v0`` would be a head start, but it was trained on 4000 pairs
labelled by the same gold scorer, which would hide how much the loop's own feedback teaches.)

Each round holds a share of its pairs out of training for good; ``rm_accuracy`` is the accuracy on
those held-out pairs of the current policy, against the labels (``rm_accuracy_gold``: against the
noise-free gold order, ties left out), the distribution the reward model is about to be used on.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

import torch
from torch import nn

from agents.pipeline.context import RunContext
from agents.pipeline.data import round_prompts, sample, sampling_env, zero_reward
from agents.pipeline.labelers import Choice, Pair, check_labels, make_labeler, read_pairs, write_pairs
from agents.pipeline.rundir import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
from reward_models import (
    LearnedRewardModel,
    PreferencePair,
    compute_rewards,
    train_reward_model,
    write_preferences,
)


def sample_pairs(run: RunContext, round_: int, policy: nn.Module) -> list[Pair]:
    """Round ``round_``'s pairs: two completions of the current policy per freshly drawn opener."""
    path = run.dir.round(round_) / "pairs.jsonl"
    if path.is_file():
        return read_pairs(path)
    config = run.config
    prompts = round_prompts(config.pairs_per_round, config.seed, round_)
    env = sampling_env(policy, run.tokenizer, zero_reward, None, config, config.num_envs or 16)
    with run.progress() as bar:
        done = sample(env, prompts, 2, run.seed("pairs", round_), bar, f"round {round_}: sampling pairs")
    # A pair with an empty or twice the same response carries no preference (and the preference
    # format refuses empty responses): it is dropped.
    pairs = [
        Pair(f"r{round_}-{i:05d}", prompt, a, b)
        for i, (prompt, a, b) in enumerate(
            zip(prompts, done.completions[0::2], done.completions[1::2], strict=True)
        )
        if a.strip() and b.strip() and a != b
    ]
    if len(pairs) < 2:
        raise ValueError(
            f"round {round_}: only {len(pairs)} of {len(prompts)} sampled pairs have two different non-empty "
            "responses; raise pairs_per_round"
        )
    write_pairs(path, pairs)
    return pairs


def label_pairs(run: RunContext, round_: int, pairs: list[Pair]) -> dict[str, Choice]:
    """The labeler's verdicts on the round's pairs (``labels.jsonl``; ``preferences.jsonl`` for ``textrl rm``)."""
    folder = run.dir.round(round_)
    path = folder / "labels.jsonl"
    if path.is_file():
        return {r["id"]: r["choice"] for r in read_jsonl(path)}
    labeler = make_labeler(run.config, run.gold)
    labels = check_labels(pairs, labeler.label(pairs, folder / "pairs.jsonl"), labeler)
    write_jsonl_atomic(path, ({"id": k, "choice": v} for k, v in labels.items()))
    write_preferences(
        folder / "preferences.jsonl", [p.preference(labels[p.id]) for p in pairs if p.id in labels]
    )
    return labels


def held_out_ids(run: RunContext, round_: int, ids: list[str]) -> set[str]:
    """The ids of round ``round_``'s pairs that no reward model ever trains on (seeded)."""
    n = max(1, math.ceil(len(ids) * run.config.rm_eval_fraction))
    return set(random.Random(run.seed("heldout", round_)).sample(sorted(ids), min(n, len(ids) - 1)))


def labelled_pairs(run: RunContext, round_: int) -> tuple[list[Pair], dict[str, Choice]]:
    folder = run.dir.round(round_)
    labels = {r["id"]: r["choice"] for r in read_jsonl(folder / "labels.jsonl")}
    return [p for p in read_pairs(folder / "pairs.jsonl") if p.id in labels], labels


def reward_backbone(run: RunContext, round_: int) -> nn.Module:
    """The SFT model's transformer under a fresh one-output scoring head (seeded)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(run.dir.sft_model)
    config.num_labels = 1
    config.pad_token_id = run.tokenizer.pad_token_id  # transformers finds the last token through it
    with torch.random.fork_rng():
        torch.manual_seed(run.seed("rm-init", round_))
        net = AutoModelForSequenceClassification.from_config(config)
    lm = AutoModelForCausalLM.from_pretrained(run.dir.sft_model)
    net.base_model.load_state_dict(lm.base_model.state_dict())
    return net


def _gold_accuracy(run: RunContext, reward: LearnedRewardModel, pairs: list[Pair]) -> float | None:
    """Share of pairs the reward model orders as the gold scorer does (gold ties left out)."""
    if run.gold is None:
        return None
    prompts = [p.prompt for p in pairs]
    texts = [p.a for p in pairs] + [p.b for p in pairs]
    gold = compute_rewards(run.gold, prompts + prompts, texts)
    proxy = reward(prompts + prompts, texts)
    n = len(pairs)
    decided = (gold[:n] - gold[n:]).abs() > 1e-9
    if not bool(decided.any()):
        return None
    agree = (proxy[:n] > proxy[n:]) == (gold[:n] > gold[n:])
    return float(agree[decided].float().mean())


def _label_agreement(run: RunContext, pairs: list[Pair], labels: dict[str, Choice]) -> float | None:
    """Share of gold-decided pairs whose label agrees with the gold order (1 minus the label noise)."""
    if run.gold is None:
        return None
    prompts = [p.prompt for p in pairs]
    gold = compute_rewards(run.gold, prompts + prompts, [p.a for p in pairs] + [p.b for p in pairs])
    gaps = (gold[: len(pairs)] - gold[len(pairs) :]).tolist()
    agree = [(g > 0) == (labels[p.id] == "a") for p, g in zip(pairs, gaps, strict=True) if abs(g) > 1e-9]
    return statistics.fmean(agree) if agree else None


def load_round_reward_model(run: RunContext, round_: int) -> tuple[LearnedRewardModel, dict[str, Any]]:
    """The reward model and figures round ``round_`` wrote (what the ranks other than 0 use).

    Raises:
        FileNotFoundError: they are not there (or not visible from this machine).
    """
    folder = run.dir.round(round_)
    out, info_file = folder / "reward_model", folder / "rm.json"
    if not (out.is_dir() and info_file.is_file()):
        raise FileNotFoundError(
            f"round {round_}'s reward model ({out} and {info_file.name}) is not there; under a launcher rank 0 "
            "writes it, and every rank must see the same run directory (on several machines, put --run_dir "
            "on a filesystem they share)"
        )
    return LearnedRewardModel(out, device=run.config.device), read_json(info_file)


def train_round_reward_model(run: RunContext, round_: int) -> tuple[LearnedRewardModel, dict[str, Any]]:
    """Retrain the reward model on every labelled pair so far; returns it and its figures (``rm.json``)."""
    folder = run.dir.round(round_)
    out, info_file = folder / "reward_model", folder / "rm.json"
    if out.is_dir() and info_file.is_file():
        return load_round_reward_model(run, round_)
    train: list[PreferencePair] = []
    for r in range(1, round_ + 1):
        pairs, labels = labelled_pairs(run, r)
        held = held_out_ids(run, r, [p.id for p in pairs])
        train += [p.preference(labels[p.id]) for p in pairs if p.id not in held]
    # pairs, labels and held are now the current round's: its held-out pairs measure accuracy
    current = [p for p in pairs if p.id in held]
    current_prefs = [p.preference(labels[p.id]) for p in current]
    config = run.config
    max_length = int(getattr(run.sft_model.config, "n_positions", 512) or 512)
    result = train_reward_model(
        reward_backbone(run, round_), run.tokenizer, train, eval_pairs=current_prefs, epochs=config.rm_epochs,
        batch_size=config.rm_batch_size, learning_rate=config.rm_learning_rate, max_length=max_length,
        seed=run.seed("rm", round_), device=config.device, progress=run.show_progress,
    )  # fmt: skip
    reward = result.reward_model(max_length=max_length)
    if config.rm_normalize:  # the current policy's samples score mean 0, std 1: kl_coef keeps its meaning
        reward.normalize_to([p.prompt for p in pairs] * 2, [p.a for p in pairs] + [p.b for p in pairs])
    info = {
        "train_pairs": len(train),
        "eval_pairs": len(current_prefs),
        "rm_accuracy": result.eval_accuracy,
        "rm_accuracy_gold": _gold_accuracy(run, reward, current),
        "label_agreement": _label_agreement(run, pairs, labels),
        "gain": reward.gain,
        "bias": reward.bias,
        "final_train_loss": result.train_loss[-1],
    }
    reward.save_pretrained(out, metadata={"training": info})
    write_json_atomic(info_file, info)
    return reward, info


__all__ = [
    "label_pairs",
    "load_round_reward_model",
    "reward_backbone",
    "sample_pairs",
    "train_round_reward_model",
]
