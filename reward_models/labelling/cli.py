"""``textrl label``: serve the labelling page; ``textrl label export``: write the voted preferences.

``main`` takes the arguments after ``label``::

    main(["--pairs", "pairs.jsonl", "--db", "labels.sqlite", "--per-pair", "2"])
    main(["export", "--db", "labels.sqlite", "--out", "prefs.jsonl"])

``python -m reward_models.labelling ...`` runs the same. Flags come from :class:`LabelConfig` and
:class:`ExportConfig` through ``transformers.HfArgumentParser`` (each field's ``help`` is its flag's help).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar, cast

from rich.console import Console
from transformers import HfArgumentParser

from reward_models.labelling.export import export_preferences, print_summary
from reward_models.labelling.records import Progress
from reward_models.labelling.serve import LabelServer

ConfigT = TypeVar("ConfigT")


@dataclass
class LabelConfig:
    """Flags of ``textrl label``."""

    # Path settings, resolved against a --config file's folder by the textrl command.
    PATHS: ClassVar[dict[str, str]] = {"db": "output", "pairs": "input"}

    db: str = field(
        metadata={"help": "SQLite file holding pairs and answers (created if missing; reuse it to resume)."}
    )
    pairs: str | None = field(
        default=None,
        metadata={
            "help": 'JSONL of pairs to label, lines {"id"?, "prompt", "a", "b"}; imported idempotently.'
        },
    )
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Interface to bind; anything but localhost requires an access token."},
    )
    port: int = field(default=8000, metadata={"help": "TCP port (0: any free port)."})
    per_pair: int = field(default=1, metadata={"help": "Answers wanted per pair (skips do not count)."})
    token: str | None = field(
        default=None, metadata={"help": "Access token to require; generated when --host is not localhost."}
    )
    lease_seconds: float = field(
        default=600.0, metadata={"help": "How long a pair on someone's screen is kept from other annotators."}
    )


@dataclass
class ExportConfig:
    """Flags of ``textrl label export``."""

    PATHS: ClassVar[dict[str, str]] = {"db": "input", "out": "output"}

    db: str = field(metadata={"help": "The SQLite file `textrl label` wrote."})
    out: str = field(metadata={"help": 'Preference JSONL to write, lines {"prompt", "chosen", "rejected"}.'})
    overwrite: bool = field(default=False, metadata={"help": "Replace --out if it exists."})


def _parse(config_type: type[ConfigT], prog: str, argv: Sequence[str]) -> ConfigT:
    parser = HfArgumentParser(config_type, prog=prog, description=config_type.__doc__)  # type: ignore[arg-type]
    (config,) = parser.parse_args_into_dataclasses(args=list(argv))
    return cast(ConfigT, config)


def _print_progress(console: Console, progress: Progress) -> None:
    """One line of progress, flushed (a pipeline or test reading our stdout sees it at once)."""
    console.print(
        f"answers {progress.answers}/{progress.target} · pairs complete {progress.complete_pairs}/{progress.pairs}"
        f" · skips {progress.skips}" + (" · all pairs answered (Ctrl+C to stop)" if progress.done else ""),
        highlight=False,
    )
    sys.stdout.flush()


def serve(config: LabelConfig, console: Console | None = None) -> int:
    """Serve the labelling page until Ctrl+C; return the exit status."""
    console = console or Console(soft_wrap=True)
    server = LabelServer(
        config.pairs, config.db, config.host, config.port, config.per_pair, config.token, config.lease_seconds
    )
    url = server.start()
    console.print(f"Labelling page: {url}", highlight=False, markup=False)
    if server.token:
        console.print(
            f"Access token: {server.token} (needed by every request; the URL above carries it)", markup=False
        )
    console.print(
        f"Answers go to {server.store.path} as they are given. Ctrl+C stops the server.", markup=False
    )
    sys.stdout.flush()
    try:
        server.wait(until_done=False, on_progress=lambda p: _print_progress(console, p))
    except KeyboardInterrupt:
        console.print("Stopped. Every acknowledged answer is stored; run `textrl label export` next.")
    finally:
        server.stop()
    return 0


def export(config: ExportConfig, console: Console | None = None) -> int:
    """Write the majority-voted preferences and print the tally; return the exit status."""
    console = console or Console(soft_wrap=True)
    summary = export_preferences(config.db, config.out, overwrite=config.overwrite)
    print_summary(summary, console)
    console.print(f"wrote {len(summary.preferences)} preference pairs to {config.out}", markup=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``textrl label [export] ...`` with ``argv`` (the arguments after ``label``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        if args[:1] == ["export"]:
            return export(_parse(ExportConfig, "textrl label export", args[1:]))
        return serve(_parse(LabelConfig, "textrl label", args))
    except SystemExit as exit_:  # argparse: --help, or a bad flag (its message is printed already)
        return exit_.code if isinstance(exit_.code, int) else 2
    except (ValueError, TypeError, OSError) as err:
        errors.print(f"error: {err}", markup=False, highlight=False)
        return 2
