"""Paths in a ``--config`` file: relative to the file's folder, checked, and refused when not a path."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from agents.cli import main
from agents.cli.args import add_dataclass_arguments, add_positional, parse_dataclasses, peek_setting
from reward_models.labelling import LabelPair, LabelStore
from tests.agents.cli.test_cli_commands import error_of


@dataclass
class Job:
    data: str | None = field(default=None, metadata={"help": "input file."})
    out: str = field(default="runs/job", metadata={"help": "output directory."})
    model: str | None = field(default=None, metadata={"help": "model id or directory."})
    steps: int = field(default=1, metadata={"help": "not a path."})

    PATHS: ClassVar[dict[str, str]] = {"data": "input", "out": "output", "model": "model"}


def parse(argv: list[str]) -> Job:
    parser = argparse.ArgumentParser()
    add_positional(parser, Job, "data")
    add_dataclass_arguments(parser, Job)
    (job,) = parse_dataclasses(parser.parse_args(argv), Job)
    return job


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder holding ``d.jsonl`` and a model directory ``local``; the working directory is elsewhere."""
    conf = tmp_path / "conf"
    (conf / "local").mkdir(parents=True)
    (conf / "d.jsonl").write_text("{}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return conf


def config(folder: Path, settings: dict) -> str:
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(settings))
    return os.path.relpath(path)  # a relative --config, as users type it


def test_relative_paths_are_relative_to_the_config_files_folder(folder: Path) -> None:
    file = config(folder, {"data": "d.jsonl", "out": "runs/x", "model": "local", "steps": 3})
    job = parse(["--config", file])
    assert Path(job.data).resolve() == folder / "d.jsonl"
    assert Path(job.out).resolve() == folder / "runs" / "x"  # an output need not exist
    assert Path(job.model).resolve() == folder / "local"
    assert job.steps == 3


def test_model_ids_stay_ids_and_absolute_and_home_paths_are_kept(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse(["--config", config(folder, {"model": "gpt2"})]).model == "gpt2"
    assert parse(["--config", config(folder, {"model": "org/name"})]).model == "org/name"
    absolute = os.fspath(folder / "d.jsonl")
    assert parse(["--config", config(folder, {"data": absolute})]).data == absolute
    monkeypatch.setenv("HOME", os.fspath(folder))
    assert parse(["--config", config(folder, {"data": "~/d.jsonl"})]).data == absolute


def test_flags_typed_on_the_command_line_win_and_stay_relative_to_the_working_directory(folder: Path) -> None:
    Path("mine.jsonl").write_text("{}\n")
    file = config(folder, {"data": "missing.jsonl", "out": "runs/x"})
    job = parse(["mine.jsonl", "--config", file, "--out", "here"])
    assert (job.data, job.out) == ("mine.jsonl", "here")  # the missing config path is never checked


@pytest.mark.parametrize(
    ("settings", "key", "written"),
    [
        ({"data": "nope.jsonl"}, "data", "nope.jsonl"),
        ({"data": "../d.jsonl"}, "data", "../d.jsonl"),  # exists beside the cwd? no: beside the config
        ({"model": "./gone"}, "model", "./gone"),  # explicitly a path, so it must exist
    ],
)
def test_a_missing_input_path_names_the_key_the_config_and_the_resolved_path(
    folder: Path, settings: dict, key: str, written: str
) -> None:
    file = config(folder, settings)
    with pytest.raises(FileNotFoundError) as err:
        parse(["--config", file])
    message = str(err.value)
    assert f"--config {file}: {key}: {written!r} resolves to {Path(file).parent / written}" in message
    assert "relative to the file's folder" in message


@pytest.mark.parametrize("value", [{"path": "d.jsonl"}, ["d.jsonl", "e.jsonl"], True])
def test_a_value_that_is_not_a_path_is_refused(folder: Path, value: object) -> None:
    file = config(folder, {"data": value})
    with pytest.raises(
        TypeError, match=rf"--config {file}: data is a {type(value).__name__} .*expected one path"
    ):
        parse(["--config", file])


def test_peek_setting_resolves_a_path_too(folder: Path) -> None:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Job)
    args = parser.parse_args(["--config", config(folder, {"out": "runs/x"})])
    assert Path(peek_setting(args, "out", None)).resolve() == folder / "runs" / "x"


def test_the_config_help_says_how_paths_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sft", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Relative paths in it are relative to the file's folder" in help_text


def test_textrl_commands_report_a_missing_config_path(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command, key in (("sft", "data"), ("rm", "eval_data"), ("plot", "run_dir"), ("eval", "prompts")):
        file = config(folder, {key: "missing"})
        message = error_of(capsys, [command, "--config", file])
        assert f"--config {file}: {key}: 'missing' resolves to {Path(file).parent / 'missing'}" in message
    file = config(folder, {"data": {"nested": 1}})
    assert "data is a dict" in error_of(capsys, ["sft", "--config", file])
    # The pipeline peeks at run_dir before parsing (to --resume): resolved there as well.
    file = config(folder, {"run_dir": "runs/p", "resume": True})
    assert f"{Path(file).parent / 'runs' / 'p'} holds no pipeline run" in error_of(
        capsys, ["pipeline", "--config", file]
    )


def test_label_export_reads_and_writes_beside_its_config(folder: Path) -> None:
    store = LabelStore(folder / "labels.sqlite")
    store.import_pairs([LabelPair("p", "prompt", "good", "bad")])
    shown = store.next_pair("ann")
    assert shown is not None
    store.record_answer("ann", "p", "left" if shown.shown_left == "a" else "right")
    file = config(folder, {"db": "labels.sqlite", "out": "prefs.jsonl"})
    assert main(["label", "export", "--config", file]) == 0
    assert '"chosen": "good"' in (folder / "prefs.jsonl").read_text()
    assert not Path("prefs.jsonl").exists()  # not in the working directory


def test_a_pipeline_config_yaml_reruns_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.pipeline.config import PipelineConfig
    from agents.pipeline.runner import _start

    monkeypatch.chdir(tmp_path)
    Path("my_model").mkdir()
    run_dir, _ = _start(PipelineConfig(run_dir="runs/a", model="my_model"), resume=False, overwrite=False)
    stored = yaml.safe_load(run_dir.config_file.read_text())
    # Stored absolute: read back through --config (relative to runs/a), they still name the same folders.
    assert stored["run_dir"] == os.fspath(tmp_path / "runs" / "a")
    assert stored["model"] == os.fspath(tmp_path / "my_model")
