"""``textrl eval``: score a policy on held-out prompts (reward, KL, win-rate, samples; JSON out).

A thin shell over :func:`agents.evaluation.evaluate_model` (which calls ``evaluate_policy``).
"""

from __future__ import annotations

import argparse

from agents.cli.args import add_dataclass_arguments, add_positional, parse_dataclasses
from agents.evaluation import EvalArguments

HELP = (
    "Score a policy on held-out prompts: mean reward, mean KL to a reference, win-rate against the reference "
    "under a judge reward, and a table of sample completions; --out FILE.json keeps it all."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_positional(parser, EvalArguments, "policy", metavar="POLICY")
    add_dataclass_arguments(parser, EvalArguments)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agents.evaluation import evaluate_model

    (eval_args,) = parse_dataclasses(args, EvalArguments)
    report = evaluate_model(eval_args)
    console = Console()
    console.print(report.summary_table())
    console.print(report.table(eval_args.examples))
    if eval_args.out is not None:
        console.print(f"report: {eval_args.out}")
    return 0
