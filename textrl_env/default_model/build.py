"""Build the embedded default model: corpus -> byte-level BPE tokenizer -> tiny GPT-2 -> assets.

Run ``python -m textrl_env.default_model.build [--out DIR] [--steps N] [--seed S]``. With the defaults
it rebuilds the shipped ``assets`` folder in a few minutes on two CPU cores; the same seed gives the
same weights. The build writes into a temporary folder next to ``--out`` and renames it into place
only when everything is written, so an interrupted build never leaves half an asset folder.

After saving, the build reloads the folder and measures what the RL tasks depend on
(:mod:`textrl_env.default_model.evaluate`); the numbers go to ``build_info.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from reward_models.learned import save_atomically
from textrl_env.default_model import DEFAULT_MODEL_PATH
from textrl_env.default_model.corpus import generate_corpus
from textrl_env.default_model.evaluate import evaluate, print_report

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
IGNORE_INDEX = -100  # label value the causal-LM loss skips

console = Console()


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the built model; saved verbatim into ``build_info.json``."""

    out: str = str(DEFAULT_MODEL_PATH)  # target folder, replaced as a whole at the end
    seed: int = 0  # seeds the corpus, the weight init, the data order and the evaluation samples
    steps: int = 3000  # optimiser steps; ~2-3 min on one busy CPU core
    batch_size: int = 32
    learning_rate: float = 3e-3  # high, as usual for a model this small; cosine-decayed to 10%
    warmup_steps: int = 100
    weight_decay: float = 0.01
    n_reviews: int = 8000
    # ~30% of the 2500 operand pairs seen. Exact sums are learnt late and abruptly (near misses by
    # +-1 come first): 800-950 lines leave greedy exact match at 15-30%, 1000 already gives ~80%.
    n_arithmetic: int = 900
    vocab_size: int = 1024  # the corpus has a few hundred words, so most become single tokens
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 128  # prompt + 32-64 new tokens fits comfortably
    threads: int = 1  # torch intra-op threads; see `build`
    eval_samples: int = 1024  # sampled review completions for the sentiment check; 0 skips evaluation

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "batch_size",
            "threads",
            "vocab_size",
            "n_layer",
            "n_head",
            "n_embd",
            "n_positions",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"BuildConfig.{name} must be positive, got {getattr(self, name)}.")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}).")
        if self.eval_samples < 0:
            raise ValueError(f"eval_samples must be >= 0, got {self.eval_samples}.")


def train_tokenizer(lines: Sequence[str], vocab_size: int, model_max_length: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``lines``, wrapped for transformers.

    Digits are split one per token, so every sum is spelled digit by digit (the model can learn
    carrying instead of memorising two-digit tokens). The byte-level decoder makes decoding an exact
    inverse of encoding for any text.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],  # ids 0 and 1
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
        show_progress=False,
    )
    backend.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,  # distinct from EOS, so masking padding never masks a real stop
        padding_side="left",  # generation and RL batches append on the right
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,  # keep decode an exact inverse of encode
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    """Save ``tokenizer`` so that both transformers 4.x and 5.x ``AutoTokenizer`` can load it."""
    tokenizer.save_pretrained(folder)
    portable_tokenizer_config(folder / "tokenizer_config.json")


def portable_tokenizer_config(path: Path) -> None:
    """Make the ``tokenizer_config.json`` at ``path``, saved by transformers 5, load with 4.x too.

    transformers 5 records its own backend class name, unknown to 4.x, and the load-time flags of a
    tokenizer it read; the generic ``PreTrainedTokenizerFast`` loads on both and the tokenizer is unchanged.
    """
    settings = json.loads(path.read_text(encoding="utf-8"))
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("is_local", "local_files_only"):
        settings.pop(key, None)
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def finish_build_folder(folder: Path, info: dict[str, Any], started: float) -> None:
    """Record the build time in ``info``, write it as ``build_info.json`` and make every file readable."""
    info["build_seconds"] = round(time.perf_counter() - started, 1)
    (folder / "build_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    for path in folder.iterdir():
        path.chmod(0o644)  # some writers create owner-only files; installed assets must be readable


def make_model(tokenizer: PreTrainedTokenizerBase, config: BuildConfig) -> GPT2LMHeadModel:
    """A freshly initialised tiny GPT-2 sized to the tokenizer (seed the global RNG first)."""
    gpt2_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        # No dropout: train and eval modes then compute the same log-probs, so an RL loop that
        # forgets model.eval() still gets consistent importance ratios.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(gpt2_config)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, getattr(gpt2_config, key))
    return model


def encode_corpus(tokenizer: PreTrainedTokenizerBase, lines: Sequence[str]) -> list[list[int]]:
    """Token ids of each line followed by EOS, so the model learns where a response stops."""
    eos = tokenizer.eos_token_id
    return [ids + [eos] for ids in tokenizer(list(lines), add_special_tokens=False)["input_ids"]]


def collate(sequences: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch for training; padded positions get label -100 and mask 0."""
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros_like(input_ids)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention_mask[row, : len(seq)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _learning_rate(step: int, config: BuildConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """One epoch of batches of similar-length sequences, in a seeded random order.

    Lines run from 4 to ~20 tokens, so padding random batches to their longest line would waste
    about half the compute. Shuffling, sorting within windows of 50 batches and shuffling the
    batches keeps the order random while padding stays small.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def train(model: GPT2LMHeadModel, sequences: list[list[int]], pad_id: int, config: BuildConfig) -> float:
    """Train ``model`` as a causal LM on ``sequences``; returns the mean loss of the last 100 steps."""
    generator = torch.Generator().manual_seed(config.seed)  # data order independent of model init
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    lengths = [len(s) for s in sequences]
    model.train()
    pending: list[list[int]] = []
    recent: list[float] = []
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"))
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("train", total=config.steps, loss="")
        for step in range(config.steps):
            if not pending:
                pending = length_bucketed_batches(lengths, config.batch_size, generator)
            batch = collate([sequences[i] for i in pending.pop()], pad_id)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, config)
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            recent = (recent + [loss.item()])[-100:]
            progress.update(task, advance=1, loss=f"loss {statistics.fmean(recent):.3f}")
    model.eval()
    return statistics.fmean(recent)


def build(config: BuildConfig) -> dict[str, Any]:
    """Build the model and tokenizer described by ``config`` into ``config.out``.

    Returns:
        The contents of the ``build_info.json`` written next to the weights.
    """
    # One thread by default: for a model this small, a second thread costs more in synchronisation
    # than it saves (5x slower per step on a busy 2-core box), and a fixed thread count keeps float
    # reductions, hence the weights, reproducible. The caller's setting is restored afterwards.
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _build(config)
    finally:
        torch.set_num_threads(previous_threads)


def _build(config: BuildConfig) -> dict[str, Any]:
    started = time.perf_counter()
    out = Path(config.out).resolve()
    lines = generate_corpus(config.n_reviews, config.n_arithmetic, seed=config.seed)
    console.print(f"corpus: {config.n_reviews} reviews + {config.n_arithmetic} sums (seed {config.seed})")
    tokenizer = train_tokenizer(lines, config.vocab_size, config.n_positions)
    torch.manual_seed(config.seed)
    model = make_model(tokenizer, config)
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"tokenizer: {len(tokenizer)} tokens; model: {n_params:,} parameters")
    final_loss = train(model, encode_corpus(tokenizer, lines), tokenizer.pad_token_id, config)

    info: dict[str, Any] = {
        "config": asdict(config) | {"out": out.name},
        "n_parameters": n_params,
        "vocab_size": len(tokenizer),
        "final_loss": final_loss,
        "torch_version": torch.__version__,
    }

    def write(folder: Path) -> None:
        # The same tanh-approximate GELU that trained it, but named so transformers runs PyTorch's
        # fused kernel (one pass) instead of gelu_new's five elementwise ops: a teacher-forced pass
        # over a long batch spends a third of its time there. Outputs agree to float rounding.
        model.config.activation_function = "gelu_pytorch_tanh"
        model.save_pretrained(folder)  # safetensors is the default format
        save_tokenizer(tokenizer, folder)
        if config.eval_samples:
            info["evaluation"] = evaluate(folder, seed=config.seed, n_samples=config.eval_samples)
        finish_build_folder(folder, info, started)
        folder.chmod(0o755)  # save_pretrained's folder follows the umask; installed assets must be readable

    save_atomically(out, write)  # an interrupted build leaves the previous folder as it was
    if config.eval_samples:
        print_report(info)
    console.print(f"wrote {out} in {info['build_seconds']} s (final loss {final_loss:.3f})")
    return info


def parse_args(argv: Sequence[str] | None = None) -> BuildConfig:
    """Command-line flags -> :class:`BuildConfig`."""
    defaults = BuildConfig()
    parser = argparse.ArgumentParser(
        prog="python -m textrl_env.default_model.build", description="Build textrl's embedded default model."
    )
    parser.add_argument("--out", default=defaults.out, help="output folder (default: the shipped assets)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of corpus, init and data order")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--n-reviews", type=int, default=defaults.n_reviews)
    parser.add_argument("--n-arithmetic", type=int, default=defaults.n_arithmetic)
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples, help="0 skips the check")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads (1 is fastest)")
    args = parser.parse_args(argv)
    return BuildConfig(
        out=args.out,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        n_reviews=args.n_reviews,
        n_arithmetic=args.n_arithmetic,
        eval_samples=args.eval_samples,
        threads=args.threads,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m textrl_env.default_model.build``; returns the build info."""
    return build(parse_args(argv))


if __name__ == "__main__":
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the shard-writing and weight-loading bars only add noise here
    main()
