"""``textrl rm``: train a reward model on preference pairs (JSONL ``{"prompt", "chosen", "rejected"}``).

A thin shell over :func:`reward_models.train_reward_model`; reports held-out accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from agents.cli.args import add_dataclass_arguments, add_positional, existing_file, parse_dataclasses
from reward_models.training import RewardTrainingConfig

HELP = (
    "Train a reward model (a one-output sequence classifier, Bradley-Terry loss) on preference pairs: a JSONL "
    "file of {'prompt', 'chosen', 'rejected'} lines. Reports held-out accuracy; saves to --out."
)


@dataclass
class RMArguments:
    """What to train from, on what, and where to save it."""

    PATHS: ClassVar[dict[str, str]] = {
        "data": "input",
        "eval_data": "input",
        "model": "model",
        "out": "output",
    }

    data: str | None = field(
        default=None, metadata={"help": "preference pairs: JSONL of {'prompt', 'chosen', 'rejected'}."}
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "backbone id or directory (a causal LM gets a fresh score head); default: the embedded model."
        },
    )
    eval_data: str | None = field(
        default=None, metadata={"help": "held-out pairs (same format); default: --eval_fraction of --data."}
    )
    out: str = field(
        default="runs/rm", metadata={"help": "directory for the reward model (safetensors + tokenizer)."}
    )
    device: str | None = field(default=None, metadata={"help": "cpu or cuda; default: cuda when available."})
    progress: bool = field(default=True, metadata={"help": "show a progress bar."})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_positional(parser, RMArguments, "data", metavar="PAIRS.jsonl")
    add_dataclass_arguments(parser, RMArguments, RewardTrainingConfig)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from reward_models.preferences import read_preferences
    from reward_models.training import train_reward_model
    from textrl_env.default_model import DEFAULT_MODEL_ID

    rm_args, config = parse_dataclasses(args, RMArguments, RewardTrainingConfig)
    if rm_args.data is None:
        raise ValueError(
            "no pairs: pass a JSONL file of {'prompt', 'chosen', 'rejected'} lines (textrl rm PAIRS.jsonl)"
        )
    pairs = read_preferences(
        existing_file(rm_args.data, "preference pairs JSONL")
    )  # read first: a bad file fails before any model loads
    eval_pairs = (
        read_preferences(existing_file(rm_args.eval_data, "preference pairs JSONL"))
        if rm_args.eval_data is not None
        else None
    )
    result = train_reward_model(
        rm_args.model or DEFAULT_MODEL_ID, None, pairs, eval_pairs, device=rm_args.device,
        output_dir=rm_args.out, progress=rm_args.progress, **dataclasses.asdict(config),
    )  # fmt: skip
    accuracy = "n/a (nothing held out)" if result.eval_accuracy is None else f"{result.eval_accuracy:.3f}"
    Console().print(
        f"[bold]reward model done[/]: {len(pairs)} pairs, held-out accuracy {accuracy}, "
        f"final train loss {result.train_loss[-1]:.4f}; saved to {result.output_dir}"
    )
    return 0
