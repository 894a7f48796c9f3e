"""``textrl pipeline``: the RLHF loop (SFT, then rounds of pairs, labels, reward model, RL, evaluation).

A thin shell over :func:`agents.pipeline.run_pipeline`. ``--resume`` continues a stopped run with
the settings it was started with (stored in RUN_DIR/config.yaml); a flag that contradicts them is
refused. Ctrl-C writes a checkpoint and exits with status 130.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from agents.cli.args import add_dataclass_arguments, parse_dataclasses, peek_setting
from agents.pipeline.config import PipelineConfig

HELP = (
    "The RLHF loop on one command: SFT on demonstrations, then --rounds rounds of: sample pairs from the policy, "
    "label them (a simulated annotator by default), retrain the reward model on all pairs so far, RL against it "
    "with a KL penalty to the SFT model, evaluate gold and proxy scores and KL on held-out prompts. Everything "
    "goes to --run_dir (summary.json, metrics.jsonl, plots/, checkpoints); --resume continues a stopped run."
)


@dataclass
class PipelineRunOptions:
    """How to treat the run directory, and what to show."""

    resume: bool = field(default=False, metadata={"help": "continue the run in --run_dir where it stopped."})
    overwrite: bool = field(
        default=False,
        metadata={"help": "delete the run in --run_dir and start over (never a foreign folder)."},
    )
    progress: bool = field(default=True, metadata={"help": "draw progress bars (--no_progress: none)."})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, PipelineRunOptions, PipelineConfig)


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from agents.pipeline import run_pipeline
    from agents.pipeline.runner import load_run_config

    defaults = None
    if peek_setting(args, "resume", False):
        run_dir = peek_setting(args, "run_dir", PipelineConfig.run_dir)
        # The stored settings are the defaults; a flag or --config value that differs is refused by run_pipeline.
        defaults = load_run_config(run_dir).to_dict() | {"run_dir": run_dir}
    options, config = parse_dataclasses(args, PipelineRunOptions, PipelineConfig, defaults=defaults)
    hf_logging.disable_progress_bar()  # weight-loading bars would only interleave with the pipeline's own
    try:
        run_pipeline(config, resume=options.resume, overwrite=options.overwrite, progress=options.progress)
    except KeyboardInterrupt:
        return 130  # run_pipeline said where it stopped and how to resume
    return 0
