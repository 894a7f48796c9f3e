"""The RLHF loop end to end on a tiny budget: the run directory, summary.json, plots, resume, refusal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from agents.pipeline import PipelineConfig, load_run_config, make_plots, resume_pipeline, run_pipeline
from agents.pipeline.plots import PLOTS
from agents.pipeline.rundir import read_jsonl
from agents.pipeline.summary import ROUND_KEYS
from tests.agents.pipeline.tiny import TINY


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "run"
    config = PipelineConfig(
        run_dir=str(root),
        early_stop_tolerance=5.0,
        early_stop_check_every=256,
        kl_target=0.5,
        kl_horizon=64,
        **TINY,
    )
    assert run_pipeline(config, progress=False, console=Console(quiet=True)) == root
    return root


def test_summary_holds_every_round_with_the_figures(tiny_run: Path) -> None:
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for record in summary["rounds"]:
        assert set(ROUND_KEYS) <= set(record)
        for key in ("gold_sft", "gold_policy", "proxy_policy", "kl", "rm_accuracy"):
            assert isinstance(record[key], float), key
        assert -1.0 <= record["gold_policy"] <= 1.0 and 0.0 <= record["rm_accuracy"] <= 1.0
        assert record["gold_sft"] == summary["gold_sft"]
    assert summary["rounds"][1]["pairs"] > summary["rounds"][0]["pairs"] > 0  # all pairs so far
    assert summary["policy_beats_sft_every_round"] == all(
        r["gold_policy"] > r["gold_sft"] for r in summary["rounds"]
    )


def test_run_directory_holds_checkpoints_logs_and_config(tiny_run: Path) -> None:
    assert (tiny_run / "round_0" / "sft" / "model.safetensors").is_file()
    for r in (1, 2):
        folder = tiny_run / f"round_{r}"
        assert (folder / "reward_model" / "model.safetensors").is_file()
        assert (folder / "policy" / "model" / "model.safetensors").is_file()
        pairs = read_jsonl(folder / "pairs.jsonl")
        assert set(pairs[0]) == {"id", "prompt", "a", "b"}
        assert {row["id"] for row in read_jsonl(folder / "labels.jsonl")} == {p["id"] for p in pairs}
        assert not (folder / "rl_partial").exists()
    assert list((tiny_run / "tensorboard").glob("events.out.tfevents.*"))
    events = {r["event"] for r in read_jsonl(tiny_run / "metrics.jsonl")}
    assert {"sft", "eval", "reward_model", "rl", "rl_done", "round"} <= events
    rl = [r for r in read_jsonl(tiny_run / "metrics.jsonl") if r["event"] == "rl"]
    assert all("rollout/score_mean" in r and "rollout/kl_mean" in r for r in rl)
    assert load_run_config(tiny_run).rounds == 2 and load_run_config(tiny_run).learning_rate == 1e-3
    assert json.loads((tiny_run / "state.json").read_text())["status"] == "complete"
    assert not list(tiny_run.rglob("*.tmp"))


def test_counter_measures_reach_the_rl_stage(tiny_run: Path) -> None:
    rl = json.loads((tiny_run / "round_1" / "rl.json").read_text())
    assert rl["kl_coef"] != pytest.approx(0.05)  # kl_target: the adaptive controller moved the coefficient
    assert len(rl["early_stop_checks"]) >= 2  # the gold-vs-proxy check ran (and, at tolerance 5, never fired)
    assert rl["early_stopped_at"] is None


def test_plots_are_valid_pngs_of_the_expected_curves(tiny_run: Path) -> None:
    for png in (tiny_run / "plots").glob("*.png"):
        png.unlink()
    written = make_plots(tiny_run)
    assert sorted(p.name for p in written) == sorted([f"{name}.png" for name in PLOTS] + ["overview.png"])
    for path in written:
        with Image.open(path) as image:
            image.verify()  # a complete, uncorrupted PNG
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 400


def test_a_used_run_directory_is_refused(tiny_run: Path) -> None:
    with pytest.raises(ValueError, match="already holds a run"):
        run_pipeline(
            PipelineConfig(run_dir=str(tiny_run), **TINY), progress=False, console=Console(quiet=True)
        )
    with pytest.raises(ValueError, match="settings it was started with, but these differ: seed"):
        run_pipeline(dataclasses.replace(load_run_config(tiny_run), seed=7), resume=True, progress=False)


def test_resuming_a_finished_run_redoes_nothing(tiny_run: Path) -> None:
    before = (tiny_run / "round_2" / "policy" / "model" / "model.safetensors").stat().st_mtime_ns
    summary = json.loads((tiny_run / "summary.json").read_text())
    resume_pipeline(tiny_run, progress=False, console=Console(quiet=True))
    assert (tiny_run / "round_2" / "policy" / "model" / "model.safetensors").stat().st_mtime_ns == before
    assert json.loads((tiny_run / "summary.json").read_text())["rounds"] == summary["rounds"]


def test_plot_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no summary.json"):
        make_plots(tmp_path)


@pytest.mark.slow
def test_the_default_loop_beats_sft_on_the_gold_score_every_round(tmp_path: Path) -> None:
    """The README's pipeline (defaults, two rounds instead of three): RL raises the true objective."""
    config = PipelineConfig(run_dir=str(tmp_path / "run"), rounds=2, seed=1)
    summary = json.loads((run_pipeline(config, progress=False) / "summary.json").read_text())
    for record in summary["rounds"]:
        assert record["gold_policy"] > record["gold_sft"] + 0.1, record
    assert summary["gold_sft"] > summary["gold_base"] + 0.1  # SFT on non-negative demonstrations helps too
