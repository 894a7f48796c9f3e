"""The ``textrl`` command framework: lazy subcommands, flags from dataclasses, --config files, errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agents.cli import SUBCOMMANDS, main
from agents.cli.args import add_dataclass_arguments, add_positional, given_settings, parse_dataclasses
from agents.cli.envs import _first_line
from agents.ppo import PPOConfig
from agents.rloo import RLOOConfig

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Settings:
    name: str | None = field(default=None, metadata={"help": "what to call it (100% yours)."})
    steps: int = field(default=10, metadata={"help": "how many steps."})
    rate: float = field(default=0.5, metadata={"help": "the rate."})
    fast: bool = field(default=False, metadata={"help": "go fast."})


def parser_for(*types: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, *types)
    return parser


def test_flags_come_from_the_dataclass_with_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = parser_for(Settings)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "how many steps." in out and "100% yours" in out and "--steps" in out and "--fast" in out
    (settings,) = parse_dataclasses(parser.parse_args(["--steps", "3", "--fast", "--rate=0.25"]), Settings)
    assert settings == Settings(steps=3, rate=0.25, fast=True)
    assert parse_dataclasses(parser.parse_args([]), Settings) == (Settings(),)


def test_precedence_default_then_defaults_then_file_then_flags(tmp_path: Path) -> None:
    parser = parser_for(Settings)
    file = tmp_path / "c.yaml"
    file.write_text("steps: 7\nrate: 1e-3\n")  # YAML reads 1e-3 as a string: converted like the flag
    args = parser.parse_args(["--config", str(file), "--steps", "9"])
    assert given_settings(args) == {"steps": 9}
    (settings,) = parse_dataclasses(args, Settings, defaults={"steps": 5, "name": "tuned", "other": 1})
    assert settings == Settings(name="tuned", steps=9, rate=1e-3)


def test_toml_config(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('name = "x"\nfast = true\n')
    (settings,) = parse_dataclasses(parser_for(Settings).parse_args(["--config", str(file)]), Settings)
    assert settings == Settings(name="x", fast=True)


def test_unknown_config_key_names_the_closest_field(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("stpes: 3\n")
    args = parser_for(Settings).parse_args(["--config", str(file)])
    with pytest.raises(ValueError, match=r"'stpes' is not a setting of Settings\. Did you mean 'steps'\?"):
        parse_dataclasses(args, Settings)


@pytest.mark.parametrize(
    ("text", "suffix", "match"),
    [
        ("steps: [1\n", ".yaml", "not valid YAML"),
        ("- 1\n", ".yml", "holds a list"),
        ("x", ".json", "unknown file type"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, suffix: str, match: str) -> None:
    file = tmp_path / f"c{suffix}"
    file.write_text(text)
    with pytest.raises(ValueError, match=match):
        parse_dataclasses(parser_for(Settings).parse_args(["--config", str(file)]), Settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Found by tests/reliability/test_fuzz_cli.py: each reached the user in Python's own words.
        ("steps: 1e30\n", "steps='1e30' is not a valid value; expected an integer"),  # int()'s words before
        ("fast: maybe\n", "fast='maybe' is not a valid value"),  # argparse.ArgumentTypeError: a traceback
        ("steps: null\n", r"steps is null \(empty\); expected an integer; leave the key out"),
        ("steps: [1, 2]\n", r"steps is list \(\[1, 2\]\); expected an integer"),
        ("rate: {a: 1}\n", "rate is dict .*; expected a number"),
        ("fast: 3\n", r"fast is int \(3\); expected true or false"),
    ],
)
def test_config_values_of_the_wrong_type_name_the_key_and_the_type(
    tmp_path: Path, text: str, message: str
) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(ValueError, match=f"--config {file}: {message}"):
        parse_dataclasses(parser_for(Settings).parse_args(["--config", str(file)]), Settings)


def test_config_values_yaml_typed_too_eagerly_are_taken(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("name: 12345678\nrate: 2\n")  # text read as a number; an integer for a float
    (settings,) = parse_dataclasses(parser_for(Settings).parse_args(["--config", str(file)]), Settings)
    assert (settings.name, settings.rate) == ("12345678", 2)
    file.write_text("name: null\n")  # None is the default of an optional setting: fine
    assert parse_dataclasses(parser_for(Settings).parse_args(["--config", str(file)]), Settings) == (
        Settings(),
    )


def test_a_peeked_setting_is_checked_before_it_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `textrl train` peeks at env before parsing; `env: [1]` used to fail with "unhashable type: 'list'".
    file = tmp_path / "c.yaml"
    file.write_text("env: [1]\n")
    assert main(["train", "--config", str(file)]) == 2
    assert "env is list ([1]); expected a string" in " ".join(capsys.readouterr().err.split())


def test_shared_fields_share_one_flag_and_foreign_flags_are_refused() -> None:
    parser = parser_for(RLOOConfig, PPOConfig)
    (rloo,) = parse_dataclasses(parser.parse_args(["--learning_rate", "0.001", "--k", "8"]), RLOOConfig)
    assert (rloo.learning_rate, rloo.k) == (0.001, 8)
    (ppo,) = parse_dataclasses(parser.parse_args(["--learning_rate", "0.001"]), PPOConfig)
    assert ppo.n_epochs == 4  # PPO's own default, not RLOO's 1 from the shared flag
    with pytest.raises(ValueError, match="'k' is not a setting of PPOConfig"):
        parse_dataclasses(parser.parse_args(["--k", "8"]), PPOConfig)


def test_positional_field() -> None:
    parser = argparse.ArgumentParser()
    add_positional(parser, Settings, "name")
    add_dataclass_arguments(parser, Settings)
    assert parse_dataclasses(parser.parse_args(["abc"]), Settings) == (Settings(name="abc"),)
    assert parse_dataclasses(parser.parse_args([]), Settings) == (Settings(),)


def test_every_subcommand_is_in_the_table_and_help_imports_no_subcommand() -> None:
    # (``import agents`` itself loads torch; the subcommands' own imports stay out of ``--help``.)
    assert set(SUBCOMMANDS) >= {"envs", "sft", "rm", "train", "eval", "pipeline", "plot", "label"}
    code = (
        "import sys; from agents.cli import main, SUBCOMMANDS; rc = main(['--help']); "
        "heavy = [m for m, _ in SUBCOMMANDS.values() if m in sys.modules]; print('HEAVY', heavy); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    for name in SUBCOMMANDS:
        assert name in done.stdout


def test_a_missing_subcommand_module_breaks_only_itself(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(SUBCOMMANDS, "ghost", ("agents.cli.no_such_module", "not written yet"))
    assert main(["ghost"]) == 2
    assert "textrl ghost` is not available" in capsys.readouterr().err
    assert main(["envs"]) == 0
    assert main(["--help"]) == 0


def test_help_of_each_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    # The pipeline's, plot's and label's modules come from other work; those present must have help.
    import importlib.util

    for name, (module, _) in SUBCOMMANDS.items():
        if importlib.util.find_spec(module) is None:
            continue
        assert main([name, "--help"]) == 0, name
        assert "usage: textrl " + name in capsys.readouterr().out


def test_envs_lists_the_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for env_id in (
        "textrl/Sentiment-v0",
        "textrl/Arithmetic-v0",
        "textrl/Preference-v0",
        "textrl/TextGeneration-v0",
    ):
        assert env_id in out


def test_cli_first_line_of_missing_or_blank_docstrings() -> None:
    assert _first_line(None) == "" and _first_line("   \n  ") == ""
    assert _first_line("\n  Answer an addition.\n\n  More.") == "Answer an addition."


def test_console_script_module_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "envs"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "textrl/Sentiment-v0" in done.stdout
