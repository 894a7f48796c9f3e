"""``textrl envs``: the registered ``textrl/...`` ids as a table."""

from __future__ import annotations

import argparse
import importlib

HELP = "List the registered textrl/... environments: id, native vector env, description, entry point."


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def env_rows() -> list[tuple[str, bool, str, str]]:
    """``(id, has native vector env, first docstring line, entry point)`` of each ``textrl/...`` id."""
    import gymnasium as gym

    import textrl_env  # noqa: F401  (registers the ids)

    rows = []
    for env_id in sorted(k for k in gym.registry if k.startswith("textrl/")):
        spec = gym.registry[env_id]
        entry = str(spec.entry_point)
        module, _, name = entry.partition(":")
        doc = getattr(importlib.import_module(module), name).__doc__
        rows.append((env_id, spec.vector_entry_point is not None, _first_line(doc), entry))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="textrl environments")
    table.add_column("id", style="bold cyan", no_wrap=True)
    table.add_column("native vector env", justify="center")
    table.add_column("description")
    table.add_column("entry point", overflow="fold")
    for env_id, vector, description, entry in env_rows():
        table.add_row(env_id, "yes" if vector else "no", description, entry)
    Console().print(table)
    return 0
