"""``textrl sft``: fine-tune a causal LM on demonstrations (JSONL ``{"prompt", "response"}``).

A thin shell over :func:`agents.sft.train_sft`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import ClassVar

from agents.cli.args import add_dataclass_arguments, add_positional, existing_file, parse_dataclasses
from agents.sft import SFTConfig
from reward_models.safe_loading import from_pretrained_safely

HELP = (
    "Fine-tune a causal LM on demonstrations: a JSONL file of {'prompt': ..., 'response': ...} lines. "
    "Saves the model and tokenizer (safetensors) to --out."
)


@dataclass
class SFTArguments:
    """What to fine-tune, on what, and where to save it."""

    PATHS: ClassVar[dict[str, str]] = {
        "data": "input",
        "model": "model",
        "tokenizer": "model",
        "out": "output",
    }

    data: str | None = field(
        default=None, metadata={"help": "demonstrations: JSONL of {'prompt', 'response'}."}
    )
    model: str | None = field(
        default=None, metadata={"help": "causal LM id or directory; default: the embedded model."}
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "tokenizer id or directory; default: --model's."}
    )
    out: str = field(
        default="runs/sft", metadata={"help": "directory for the fine-tuned model and tokenizer."}
    )
    skip_bad_lines: bool = field(
        default=False, metadata={"help": "warn about malformed lines instead of stopping."}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar."})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_positional(parser, SFTArguments, "data", metavar="DEMOS.jsonl")
    add_dataclass_arguments(parser, SFTArguments, SFTConfig)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agents.sft import read_demonstrations, train_sft
    from textrl_env.default_model import DEFAULT_MODEL_ID

    sft_args, config = parse_dataclasses(args, SFTArguments, SFTConfig)
    if sft_args.data is None:
        raise ValueError(
            "no demonstrations: pass a JSONL file of {'prompt', 'response'} lines (textrl sft DEMOS.jsonl)"
        )
    demos = read_demonstrations(
        existing_file(sft_args.data, "demonstrations JSONL"),
        on_error="skip_with_warning" if sft_args.skip_bad_lines else "raise",
    )
    model_id = sft_args.model or DEFAULT_MODEL_ID
    model = from_pretrained_safely(AutoModelForCausalLM, model_id)
    tokenizer = AutoTokenizer.from_pretrained(sft_args.tokenizer or model_id)
    result = train_sft(model, tokenizer, demos, config, output_dir=sft_args.out, progress=sft_args.progress)
    Console().print(
        f"[bold]SFT done[/]: {result.num_examples} demonstrations, {result.num_steps} steps, "
        f"loss {result.epoch_losses[0]:.4f} -> {result.epoch_losses[-1]:.4f}; saved to {result.output_dir}"
    )
    return 0
