"""The ``textrl`` console command."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def cmd_envs(args: argparse.Namespace) -> int:
    """Print the registered ``textrl/...`` ids as a table."""
    import gymnasium as gym
    from rich.console import Console
    from rich.table import Table

    import textrl_env  # noqa: F401  (registers the ids)

    table = Table(title="textrl environments")
    table.add_column("id", style="bold cyan", no_wrap=True)
    table.add_column("native vector env", justify="center")
    table.add_column("description")
    table.add_column("entry point", overflow="fold")
    for env_id in sorted(k for k in gym.registry if k.startswith("textrl/")):
        spec = gym.registry[env_id]
        entry = str(spec.entry_point)
        module, _, name = entry.partition(":")
        doc = getattr(importlib.import_module(module), name).__doc__
        table.add_row(env_id, "yes" if spec.vector_entry_point else "no", _first_line(doc), entry)
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per stage."""
    parser = argparse.ArgumentParser(prog="textrl", description="Reinforcement learning on text.")
    sub = parser.add_subparsers(dest="command", required=True)
    envs = sub.add_parser("envs", help="list the registered textrl/... environments")
    envs.set_defaults(func=cmd_envs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``textrl`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
