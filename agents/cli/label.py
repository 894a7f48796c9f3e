"""``textrl label``: serve the labelling page; ``textrl label export``: write the voted preferences.

A thin shell over :mod:`reward_models.labelling` (``serve`` and ``export``), with the flags of its
:class:`~reward_models.labelling.cli.LabelConfig` and :class:`~reward_models.labelling.cli.ExportConfig`.
"""

from __future__ import annotations

import argparse
import dataclasses

from agents.cli.args import add_dataclass_arguments, given_settings, load_config_file, parse_dataclasses

HELP = (
    "Rank pairs of responses in a browser: `textrl label --pairs PAIRS.jsonl --db LABELS.sqlite` serves the "
    "page (localhost by default; a token is required on any other host); `textrl label export --db "
    "LABELS.sqlite --out prefs.jsonl` writes the majority-voted {'prompt', 'chosen', 'rejected'} JSONL "
    "that `textrl rm` reads, with per-annotator counts and agreement."
)
ACTIONS = ("serve", "export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reward_models.labelling.cli import ExportConfig, LabelConfig

    parser.add_argument(
        "action", nargs="?", choices=ACTIONS, default="serve", help="serve the page (default) or export"
    )
    add_dataclass_arguments(parser, LabelConfig, ExportConfig)
    # Both actions share one parser, so a field required by one (--out for export) is checked in
    # run() for the action chosen, not by argparse for both.
    for action in parser._actions:
        action.required = action.required and not action.option_strings


def run(args: argparse.Namespace) -> int:
    from reward_models.labelling.cli import ExportConfig, LabelConfig, export, serve

    config_type = ExportConfig if args.action == "export" else LabelConfig
    required = [f.name for f in dataclasses.fields(config_type) if f.default is dataclasses.MISSING]
    given = set(given_settings(args)) | set(load_config_file(args.config) if args.config else {})
    missing = [name for name in required if name not in given]
    if missing:
        flags = " ".join(f"--{name} ..." for name in missing)
        raise ValueError(f"`textrl label {args.action}` needs {flags}; see `textrl label --help`")
    (config,) = parse_dataclasses(args, config_type)
    return export(config) if args.action == "export" else serve(config)
