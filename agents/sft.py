"""Supervised fine-tuning on (prompt, response) demonstrations: the first stage of the RLHF pipeline.

Batches use the environment's layout -- a left-padded prompt block encoded as the env encodes
prompts, then the response (plus EOS), right-padded -- so the model learns in exactly the layout it
later acts in, and the loss is the same teacher-forced :func:`textrl_env.logprobs.sequence_logprobs`
the agents use, on response tokens only.

From the command line::

    python -m agents.sft --data demos.jsonl --model path/to/model --out runs/sft

Demonstration files hold one JSON object per line with string keys ``prompt`` and ``response``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from agents.checkpoint import atomic_directory
from agents.config import _help
from agents.losses import masked_mean
from reward_models.encoding import encode_continuation, encode_prompts
from reward_models.jsonl import read_jsonl_records, record_problem
from reward_models.safe_loading import from_pretrained_safely
from textrl_env.logprobs import sequence_logprobs
from textrl_env.models import check_vocab

FIELDS = ("prompt", "response")


class DemonstrationFileWarning(UserWarning):
    """Warned by ``read_demonstrations(..., on_error="skip_with_warning")`` for each file with skipped lines."""


@dataclass(frozen=True)
class Demonstration:
    """A prompt and the response the model should learn to give."""

    prompt: str
    response: str

    def __post_init__(self) -> None:
        problem = _problem_with({"prompt": self.prompt, "response": self.response})
        if problem:
            raise ValueError(f"invalid Demonstration: {problem}")


def _problem_with(record: object) -> str | None:
    return record_problem(
        record, FIELDS, ("response",), "there is nothing to learn from an empty demonstration"
    )


def read_demonstrations(
    path: str | os.PathLike[str], on_error: Literal["raise", "skip_with_warning"] = "raise"
) -> list[Demonstration]:
    """Read demonstrations from a JSONL file (blank lines ignored, extra keys dropped).

    Raises:
        ValueError: malformed lines with ``on_error="raise"``, each listed as ``path:line: reason``.
        FileNotFoundError: ``path`` does not exist.
    """
    return read_jsonl_records(
        path,
        _problem_with,
        lambda r: Demonstration(r["prompt"], r["response"]),
        on_error,
        DemonstrationFileWarning,
    )


@dataclass
class SFTConfig:
    """Supervised fine-tuning settings."""

    learning_rate: float = _help("AdamW learning rate.", 5e-5)
    num_epochs: int = _help("passes over the demonstrations.", 3)
    batch_size: int = _help("demonstrations per optimizer step.", 8)
    max_prompt_tokens: int | None = _help("keep the prompt's last N tokens; None keeps all.", None)
    max_response_tokens: int | None = _help(
        "keep the response's first N tokens, EOS included; None keeps all.", None
    )
    weight_decay: float = _help("AdamW weight decay.", 0.0)
    adam_eps: float = _help("Adam epsilon; 1e-5, the RLHF checklist's, as in the RL stage.", 1e-5)
    max_grad_norm: float | None = _help("gradient norm clip; None turns clipping off.", 1.0)
    seed: int = _help("seeds the shuffle (and dropout, when on).", 0)
    device: str | None = _help("cpu, cuda, ...; None: wherever the model already is.", None)
    dropout: bool = _help("train with dropout on; off by default, as the RL stage runs the model.", False)

    def __post_init__(self) -> None:
        positive = {
            "learning_rate": self.learning_rate,
            "num_epochs": self.num_epochs,
            "batch_size": self.batch_size,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"SFTConfig.{name} must be > 0, got {value}")
        for name in ("max_prompt_tokens", "max_response_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"SFTConfig.{name} must be >= 1 or None, got {value}")


@dataclass
class SFTResult:
    """What a fine-tuning run did: a loss per optimizer step and the mean loss of each epoch."""

    losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    num_examples: int = 0
    num_steps: int = 0
    output_dir: Path | None = None


def tokenize_demonstrations(
    tokenizer: Any,
    demos: Sequence[Demonstration],
    max_prompt_tokens: int | None = None,
    max_response_tokens: int | None = None,
) -> list[tuple[list[int], list[int]]]:
    """``(prompt_ids, response_ids + [EOS])`` per demonstration.

    The prompt goes through the env's own prompt encoder (:func:`reward_models.encoding.encode_prompts`:
    the tokenizer's leading special tokens such as a BOS, then the prompt; a cut keeps the BOS and the
    prompt's end); the response has no special tokens and is followed by EOS so the model learns to stop.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token so responses can end")
    examples = []
    prompts = encode_prompts(tokenizer, [demo.prompt for demo in demos], max_prompt_tokens)
    for i, (demo, prompt) in enumerate(zip(demos, prompts, strict=True)):
        if not prompt:
            if tokenizer.bos_token_id is None:
                raise ValueError(
                    f"demonstration {i} has an empty prompt and the tokenizer has no BOS token to start from; "
                    "give it a prompt (the first response token needs something to be predicted from)"
                )
            prompt = [tokenizer.bos_token_id]
        response = encode_continuation(tokenizer, demo.response) + [eos]
        if max_response_tokens is not None:
            response = response[:max_response_tokens]
        examples.append((prompt, response))
    return examples


def collate(
    examples: Sequence[tuple[list[int], list[int]]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(input_ids (B, P + R), attention_mask (B, P + R), P)``: prompts left-padded to P, responses right-padded."""
    p = max(len(prompt) for prompt, _ in examples)
    r = max(len(response) for _, response in examples)
    ids = torch.full((len(examples), p + r), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (prompt, response) in enumerate(examples):
        ids[row, p - len(prompt) : p] = torch.tensor(prompt)
        ids[row, p : p + len(response)] = torch.tensor(response)
        mask[row, p - len(prompt) : p + len(response)] = 1
    return ids, mask, p


def sft_loss(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """Mean negative log-likelihood of the response tokens (EOS included); prompt tokens carry no loss.

    ``vocab_size`` (the tokenizer's size) normalises over the real tokens only, as the env's
    log-probs are, when the model's embeddings are padded past it; None uses every logit.
    """
    logprobs = sequence_logprobs(
        model, input_ids, attention_mask, response_start, vocab_size=vocab_size
    )  # (B, R)
    return -masked_mean(logprobs, attention_mask[:, response_start:])


def _as_demonstrations(data: str | os.PathLike | Sequence[Any]) -> list[Demonstration]:
    if isinstance(data, str | os.PathLike):
        return read_demonstrations(data)
    demos = []
    for i, item in enumerate(data):
        if isinstance(item, Demonstration):
            demos.append(item)
        elif isinstance(item, Mapping):
            demos.append(Demonstration(item.get("prompt"), item.get("response")))  # type: ignore[arg-type]
        elif isinstance(item, tuple | list) and len(item) == 2:
            demos.append(Demonstration(*item))
        else:
            raise TypeError(
                f"demonstration {i} is {item!r}; expected a (prompt, response) pair, a dict or a Demonstration"
            )
    if not demos:
        raise ValueError(
            "no demonstrations to train on; pass a non-empty JSONL file or list of (prompt, response)"
        )
    return demos


def train_sft(
    model: nn.Module,
    tokenizer: Any,
    data: str | os.PathLike | Sequence[Any],
    config: SFTConfig | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> SFTResult:
    """Fine-tune ``model`` in place on demonstrations; optionally save it (and the tokenizer) to ``output_dir``.

    Args:
        model: a transformers causal LM.
        tokenizer: its tokenizer (needs an EOS token).
        data: a JSONL path, or a list of ``(prompt, response)`` pairs, dicts or :class:`Demonstration`.
        config: settings (defaults: :class:`SFTConfig`).
        output_dir: where to ``save_pretrained`` the result (atomically); None to skip saving.
        progress: show a rich progress bar.
        console: the rich console to draw on.

    Returns:
        An :class:`SFTResult` with the loss history.
    """
    config = config or SFTConfig()
    demos = _as_demonstrations(data)
    examples = tokenize_demonstrations(tokenizer, demos, config.max_prompt_tokens, config.max_response_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    vocab_size = check_vocab(model, tokenizer)  # fewer than the model's logits: a padded vocabulary
    device = torch.device(config.device) if config.device else next(model.parameters()).device
    model.to(device)
    model.train(config.dropout)
    if config.dropout:
        torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=config.learning_rate, eps=config.adam_eps, weight_decay=config.weight_decay
    )
    steps_per_epoch = -(-len(examples) // config.batch_size)
    result = SFTResult(num_examples=len(examples))
    bar = Progress(
        TextColumn("sft epoch {task.fields[epoch]} loss {task.fields[loss]}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console, disable=not progress,
    )  # fmt: skip
    with bar:
        task = bar.add_task("sft", total=steps_per_epoch * config.num_epochs, epoch=1, loss="-")
        for epoch in range(config.num_epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            epoch_losses = []
            for start in range(0, len(order), config.batch_size):
                batch = [examples[i] for i in order[start : start + config.batch_size]]
                ids, mask, response_start = collate(batch, pad)
                ids, mask = ids.to(device), mask.to(device)  # (B, P + R)
                optimizer.zero_grad(set_to_none=True)  # before the forward: its activations reuse the memory
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    loss = sft_loss(model, ids, mask, response_start, vocab_size)
                loss.backward()
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                value = loss.item()  # one sync per optimizer step, for the history and the bar
                result.losses.append(value)
                epoch_losses.append(value)
                bar.update(task, advance=1, epoch=epoch + 1, loss=f"{value:.4f}")
            result.epoch_losses.append(sum(epoch_losses) / len(epoch_losses))
    result.num_steps = len(result.losses)
    model.eval()
    if output_dir is not None:
        result.output_dir = save_pretrained_atomic(model, tokenizer, output_dir)
    return result


def save_pretrained_atomic(model: Any, tokenizer: Any, output_dir: str | os.PathLike) -> Path:
    """``save_pretrained`` (safetensors) of the model and tokenizer into a temp dir, renamed into place at the end."""
    with atomic_directory(output_dir) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(output_dir)


def main(argv: Sequence[str] | None = None) -> SFTResult:
    """``python -m agents.sft --data demos.jsonl --model PATH --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m agents.sft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="JSONL file of {'prompt': ..., 'response': ...} lines")
    parser.add_argument("--model", required=True, help="a transformers causal LM id or directory")
    parser.add_argument("--out", required=True, help="directory to save the fine-tuned model and tokenizer")
    parser.add_argument("--tokenizer", default=None, help="tokenizer id or directory (default: --model)")
    defaults = SFTConfig()
    parser.add_argument("--epochs", type=int, default=defaults.num_epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--max-prompt-tokens", type=int, default=None)
    parser.add_argument("--max-response-tokens", type=int, default=None)
    parser.add_argument(
        "--skip-bad-lines", action="store_true", help="warn about malformed lines instead of stopping"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = SFTConfig(
        learning_rate=args.lr, num_epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=device,
        max_prompt_tokens=args.max_prompt_tokens, max_response_tokens=args.max_response_tokens,
    )  # fmt: skip
    demos = read_demonstrations(args.data, on_error="skip_with_warning" if args.skip_bad_lines else "raise")
    model = from_pretrained_safely(AutoModelForCausalLM, args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    result = train_sft(model, tokenizer, demos, config, output_dir=args.out, progress=not args.quiet)
    if not args.quiet:
        Console().print(
            f"[bold]SFT done[/bold]: {result.num_examples} demonstrations, {result.num_steps} steps, "
            f"loss {result.epoch_losses[0]:.4f} -> {result.epoch_losses[-1]:.4f}; saved to {result.output_dir}"
        )
    return result


if __name__ == "__main__":
    main()
