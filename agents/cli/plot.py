"""``textrl plot RUN_DIR``: PNG plots of a pipeline run's curves, into RUN_DIR/plots.

A thin shell over :func:`agents.pipeline.make_plots`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import ClassVar

from agents.cli.args import add_dataclass_arguments, add_positional, parse_dataclasses

HELP = (
    "Draw a pipeline run's curves as PNG files in RUN_DIR/plots: gold vs proxy score per round, KL to the SFT "
    "model, reward-model accuracy, and every RL iteration's proxy score and KL (plus an overview of all four)."
)


@dataclass
class PlotArguments:
    """Which run to plot."""

    PATHS: ClassVar[dict[str, str]] = {"run_dir": "input"}

    run_dir: str | None = field(
        default=None, metadata={"help": "the run directory of a `textrl pipeline` run."}
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_positional(parser, PlotArguments, "run_dir", metavar="RUN_DIR")
    add_dataclass_arguments(parser, PlotArguments)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agents.pipeline import make_plots

    (plot_args,) = parse_dataclasses(args, PlotArguments)
    if plot_args.run_dir is None:
        raise ValueError(
            "no run directory: pass the --run_dir of a `textrl pipeline` run (textrl plot RUN_DIR)"
        )
    for path in make_plots(plot_args.run_dir):
        Console().print(f"wrote {path}")
    return 0
