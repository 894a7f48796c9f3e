"""The ``textrl`` console command: one subcommand per stage of the RLHF loop.

Each subcommand is a module exporting ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``,
a thin shell over a Python function a user can call. Modules are imported only when their
subcommand is chosen, so ``textrl --help`` imports nothing heavy (no torch, no transformers).

User errors (a bad file, an unknown env id or agent, a model of the wrong kind) print one red line
naming the value and the fix, and exit with status 2; ``textrl --debug ...`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

# name -> (module, one-line help). A module listed here may be missing from an install or not
# written yet ("label" is wired by the labelling work, "pipeline"/"plot" by the pipeline work):
# a missing module only breaks its own subcommand, never the others or ``textrl --help``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "envs": ("agents.cli.envs", "list the registered textrl/... environments"),
    "sft": ("agents.cli.sft", "fine-tune a causal LM on demonstrations (JSONL prompt/response)"),
    "rm": ("agents.cli.rm", "train a reward model on preference pairs (JSONL prompt/chosen/rejected)"),
    "train": ("agents.cli.train", "RL on an env id, or on a model + reward model + prompts file"),
    "eval": ("agents.cli.eval", "score a policy on held-out prompts: reward, KL, win-rate, samples"),
    "pipeline": ("agents.cli.pipeline", "the RLHF loop: SFT, then rounds of pairs, reward model, RL, eval"),
    "plot": ("agents.cli.plot", "PNG plots of a run directory's curves"),
    "label": ("agents.cli.label", "rank pairs in a browser; export them as preference JSONL"),
}

# Errors of the user's making: shown as one red line, exit status 2.
# OSError covers a missing file and transformers' "not a local folder and not a valid model id".
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The first argument that names a subcommand (top-level options come before it)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
    return None


def _load(name: str) -> ModuleType:
    module_name = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise  # the module exists but something it imports is missing: a real error
        raise ValueError(
            f"`textrl {name}` is not available in this install ({module_name} is missing); "
            "reinstall textrl (pip install -e .) or update to a version that has it"
        ) from err


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, ModuleType | None]:
    """The ``textrl`` parser; only ``command``'s module is imported and given its arguments."""
    parser = argparse.ArgumentParser(prog="textrl", description="Reinforcement learning on text.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module = None
    for name, (_, help_text) in SUBCOMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        module = _load(name)
        child = sub.add_parser(
            name,
            help=help_text,
            description=getattr(module, "HELP", help_text),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(child)
    return parser, module


def _fail(message: str) -> int:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``textrl`` console script; returns the exit status.

    Args:
        argv: the arguments after ``textrl`` (default: ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _chosen_command(argv)
    debug = "--debug" in (argv[: argv.index(command)] if command else argv)
    try:
        parser, module = build_parser(command)
        args = parser.parse_args(argv)
        assert module is not None  # parse_args requires a command, and the chosen one was loaded
        return int(module.run(args))
    except SystemExit as exit_:  # --help, or argparse's own usage errors (already printed, status 2)
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except USER_ERRORS as err:
        if debug:
            raise
        from rich.markup import escape

        return _fail(escape(str(err)))
    except RuntimeError as err:
        from agents.distributed import RankFailure

        if debug or not isinstance(err, RankFailure):
            raise
        from rich.markup import escape

        return _fail(escape(str(err)))  # another rank's error, which that rank printed in full


__all__ = ["SUBCOMMANDS", "build_parser", "main"]
