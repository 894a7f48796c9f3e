"""Property-based fuzz of the ``textrl`` command: whatever the argv, never a Python traceback.

Hypothesis builds the argv of each subcommand from its real flags (both spellings) with nonsense
values, flags missing their value, unknown flags, stray positionals and a ``--config`` file of random
settings, and runs ``agents.cli.main(argv)`` in-process. Only these outcomes are allowed:

- exit status 2 from argparse, whose message names the flag (or the unrecognised argument);
- a non-zero status with one clean ``error:`` line (not a raw Python error such as ``'NoneType'
  object has no attribute``);
- status 0 (``--help``, ``textrl envs``);
- the command reaching its stage function, which the test replaces with one that records the call
  and stops (so nothing trains, serves or loads a model).

Any other exception escaping ``main`` fails the test with its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.cli import SUBCOMMANDS, build_parser, main

COMMANDS = sorted(SUBCOMMANDS)
# Fragments of Python's own error messages: a user error that shows one of them leaked from deep inside.
RAW_FRAGMENTS = (
    "object has no attribute",
    "not supported between instances",
    "unhashable type",
    "has no len()",
    "unsupported operand",
    "positional argument",
    "unexpected keyword argument",
    "object is not subscriptable",
    "object is not iterable",
    "object is not callable",
    "index out of range",
    "invalid literal for",
    "could not convert string to float",
    "'NoneType'",
    "can only concatenate",
    "must be str, not",
)
ARGPARSE_NAMES_IT = re.compile(
    r"argument \S+|unrecognized arguments|ambiguous option|the following arguments"
)


class StageReached(Exception):  # noqa: N818 (an outcome, not an error)
    """Raised by the stand-in stage functions: the arguments got through every check."""

    def __init__(self, stage: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(stage)
        self.stage, self.args_, self.kwargs = stage, args, kwargs


def _stage(name: str) -> Any:
    def record(*args: Any, **kwargs: Any) -> None:
        raise StageReached(name, *args, **kwargs)

    return record


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A working directory with files a user might point at: good, malformed and of the wrong kind."""
    with tempfile.TemporaryDirectory(prefix="textrl-fuzz-") as root:
        here = Path(root)
        (here / "demos.jsonl").write_text(json.dumps({"prompt": "a", "response": " b"}) + "\n")
        (here / "prefs.jsonl").write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
        (here / "pairs.jsonl").write_text(json.dumps({"prompt": "a", "a": "b", "b": "c"}) + "\n")
        (here / "prompts.txt").write_text("hello\nworld\n")
        (here / "bad.jsonl").write_text("{not json\n")
        (here / "empty.txt").write_text("")
        (here / "folder").mkdir()
        yield here


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Iterator[None]:
    """Replace every stage that would train, serve or load a model; run inside ``workdir``."""
    from transformers.utils import logging as hf_logging

    import agents.cli.sft
    import agents.cli.train
    import agents.evaluation
    import agents.pipeline
    import reward_models.labelling.serve
    import reward_models.training

    monkeypatch.setattr(agents.cli.train, "train_agent", _stage("train_agent"))
    monkeypatch.setattr(agents.evaluation, "evaluate_model", _stage("evaluate_model"))
    monkeypatch.setattr(agents.cli.sft, "from_pretrained_safely", _stage("sft model load"))
    monkeypatch.setattr(reward_models.training, "train_reward_model", _stage("train_reward_model"))
    monkeypatch.setattr(agents.pipeline, "run_pipeline", _stage("run_pipeline"))
    monkeypatch.setattr(agents.pipeline, "make_plots", _stage("make_plots"))
    monkeypatch.setattr(reward_models.labelling.serve.LabelServer, "start", _stage("label server start"))
    monkeypatch.chdir(workdir)
    bars = hf_logging.is_progress_bar_enabled()
    yield
    if bars:  # `textrl pipeline` turns transformers' bars off for the process; later tests keep theirs
        hf_logging.enable_progress_bar()


def _actions(command: str) -> list[argparse.Action]:
    parser, _ = build_parser(command)
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(subparsers.choices[command]._actions)


FILES = ["demos.jsonl", "prefs.jsonl", "pairs.jsonl", "prompts.txt", "bad.jsonl", "empty.txt", "folder"]
VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "3", "1e30", "-1e-9", "nan", "inf", "-inf", "0.5", "2**62", "1_000"]),
    st.sampled_from(["", " ", "abc", "true", "no", "None", "null", "cpu", "cuda", "rloo", "ppo", "x" * 300]),
    st.sampled_from(
        ["textrl/Sentiment-v0", "textrl/Nope-v9", "../nowhere", "/", ".", "~", "🙂", "a\nb", "-"]
    ),
    st.sampled_from(FILES),
    st.text(max_size=8),
)
YAML_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.sampled_from([0.5, -1.0, 1e30, float("nan"), float("inf")]),
    VALUES,
    st.lists(st.integers(0, 3), max_size=2),
    st.just({"nested": 1}),
)


@st.composite
def argv_for(draw: st.DrawFn, command: str, flags: list[argparse.Action], names: list[str]) -> list[str]:
    """``[command, ...]``: real flags with values or none, unknown flags, positionals, maybe a config file."""
    argv = [command]
    for _ in range(draw(st.integers(0, 3))):
        # Mostly real flags with values, so most argv get past argparse to the command's own checks.
        kind = draw(st.sampled_from(["flag value"] * 6 + ["flag", "unknown", "positional"]))
        if kind == "unknown":
            argv += [draw(st.sampled_from(["--bogus", "--learning-rat", "-x", "--"]))]
        elif kind == "positional":
            argv += [draw(VALUES)]
        else:
            action = draw(st.sampled_from(flags))
            if action.dest in ("help", "config"):
                continue  # --help prints the page; --config gets a real file below
            argv += [draw(st.sampled_from(action.option_strings))]
            if kind == "flag value":
                argv += [draw(VALUES)]
    if draw(st.booleans()):
        keys = st.sampled_from([*names, *names, "bogus_key", "learning-rate"])
        settings_ = draw(st.dictionaries(keys, YAML_VALUES, max_size=4))
        path = Path(tempfile.mkdtemp(prefix="cfg-", dir=".")) / "c.yaml"
        path.write_text(yaml.safe_dump(settings_, allow_unicode=True))
        argv += ["--config", os.fspath(path)]
    return argv


def run(argv: list[str]) -> tuple[str, int | None, str]:
    """``(outcome, status, stderr)``; outcome is ``"stage"`` or ``"exit"``."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            status = main(argv)
    except StageReached as reached:
        return "stage", None, reached.stage
    return "exit", status, err.getvalue()


def describe(argv: list[str]) -> str:
    """``argv``, with the config file's text when there is one (Hypothesis shows only its name)."""
    if "--config" not in argv:
        return repr(argv)
    return f"{argv} with config {Path(argv[argv.index('--config') + 1]).read_text()!r}"


def check(argv: list[str]) -> None:
    outcome, status, err = run(argv)
    if outcome == "stage" or status == 0:
        return
    assert "Traceback" not in err, f"{describe(argv)}: a traceback\n{err}"
    assert "error:" in err, f"{describe(argv)}: status {status} without an error message: {err!r}"
    message = " ".join(err[err.index("error:") :].split())
    if err.startswith("usage:"):  # argparse's own: it must say which argument
        assert status == 2 and ARGPARSE_NAMES_IT.search(message), f"{describe(argv)}: {message}"
        return
    raw = [fragment for fragment in RAW_FRAGMENTS if fragment in message]
    assert not raw, f"{describe(argv)}: a raw Python error reached the user: {message}"


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("command", COMMANDS)
def test_textrl_argv_never_ends_in_a_traceback(command: str, stages: None) -> None:
    actions = _actions(command)
    flags = [a for a in actions if a.option_strings]
    names = sorted({a.dest for a in actions} - {"help", "config"}) or ["bogus_key"]  # positionals too

    @FUZZ
    @given(argv=argv_for(command, flags, names))
    def fuzz(argv: list[str]) -> None:
        check(argv)

    fuzz()


@pytest.mark.parametrize(
    ("argv", "stage"),
    [
        (["train", "textrl/Sentiment-v0"], "train_agent"),
        (["eval", "folder"], "evaluate_model"),
        (["sft", "demos.jsonl"], "sft model load"),
        (["rm", "prefs.jsonl"], "train_reward_model"),
        (["pipeline", "--rounds", "1"], "run_pipeline"),
        (["plot", "folder"], "make_plots"),
        (["label", "--pairs", "pairs.jsonl", "--db", "fuzz-labels.sqlite"], "label server start"),
    ],
)
def test_valid_argv_reaches_the_stage(argv: list[str], stage: str, stages: None) -> None:
    # The fuzz's stand-ins are wired: a valid command gets through every check to its stage.
    assert run(argv)[:1] == ("stage",) and run(argv)[2] == stage
