"""``textrl train``, ``eval``, ``sft`` and ``rm`` end to end with tiny budgets, and their bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from transformers import AutoModelForCausalLM

from agents import PPO, REINFORCE, RLOO
from agents.cli import main
from textrl_env.default_model import DEFAULT_MODEL_ID, DEFAULT_REWARD_MODEL_PATH, SENTIMENT_PROMPTS

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--total_timesteps", "64", "--num_envs", "8", "--eval_samples", "1", "--no_progress"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def error_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The message of a command that must fail as a user error: exit 2, one red line, no traceback."""
    capsys.readouterr()  # drop what earlier commands printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    err = err[err.index("error:") :]  # after transformers' weight-loading bar, if any
    return " ".join(err.split())  # rich may wrap; compare the words


@pytest.mark.parametrize(("agent", "algo"), [("reinforce", REINFORCE), ("rloo", RLOO), ("ppo", PPO)])
def test_train_each_agent_tiny(agent: str, algo: type, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    extra = ["--minibatch_size", "8"] if agent == "ppo" else []  # the tuned 16 does not divide 8 rows
    assert main(["train", "textrl/Sentiment-v0", "--agent", agent, *TINY, *extra, "--out", str(out)]) == 0
    assert "held-out reward" in capsys.readouterr().out
    summary = json.loads((out / "train.json").read_text())
    assert summary["agent"] == agent and summary["run"]["total_timesteps"] == 64
    assert summary["config"]["learning_rate"] > 1e-5  # the tuned value, not the library default
    assert 0.0 <= summary["after"]["win_rate"] <= 1.0 and (out / "progress.csv").exists()
    envs = gym.make_vec("textrl/Sentiment-v0", num_envs=8, vectorization_mode="vector_entry_point")
    assert algo.load(out / "agent", env=envs, verbose=0).num_timesteps >= 64
    AutoModelForCausalLM.from_pretrained(out / "agent" / "model")


def test_train_flags_and_config_override_the_table_and_no_tuned_gives_library_defaults(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 2e-3\nk: 2\n")
    out = tmp_path / "a"
    assert (
        main(["train", "textrl/Sentiment-v0", *TINY, "--config", str(config), "--k", "8", "--out", str(out)])
        == 0
    )
    summary = json.loads((out / "train.json").read_text())
    assert (summary["config"]["learning_rate"], summary["config"]["k"]) == (2e-3, 8)
    out = tmp_path / "b"
    assert main(["train", "textrl/Sentiment-v0", *TINY, "--no_tuned", "--out", str(out)]) == 0
    assert json.loads((out / "train.json").read_text())["config"]["learning_rate"] == 1e-5


def test_train_on_a_model_reward_model_and_prompts_file_then_eval(tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(SENTIMENT_PROMPTS[:8]) + "\n")
    held_out = write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": p} for p in SENTIMENT_PROMPTS[8:12]])
    out = tmp_path / "run"
    argv = ["train", "--model", DEFAULT_MODEL_ID, "--reward_model", str(DEFAULT_REWARD_MODEL_PATH)]
    argv += ["--prompts", str(prompts), "--eval_prompts", str(held_out), *TINY, "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["env"] == "textrl/TextGeneration-v0" and summary["after"]["n_prompts"] == 4
    report_file = tmp_path / "eval.json"
    argv = ["eval", str(out), "--prompts", str(held_out), "--n_samples", "2", "--num_envs", "4"]
    assert main([*argv, "--out", str(report_file)]) == 0
    assert "win-rate vs reference" in capsys.readouterr().out
    report = json.loads(report_file.read_text())
    assert report["n_prompts"] == 4 and len(report["samples"]) == 8 and 0 <= report["win_rate"] <= 1
    assert report["kl_mean"] > 0  # the trained policy left its reference, the embedded model


def test_eval_of_the_embedded_model_against_itself_ties(tmp_path: Path) -> None:
    report_file = tmp_path / "e.json"
    assert main(["eval", DEFAULT_MODEL_ID, "--n_samples", "1", "--out", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["win_rate"] == 0.5 and abs(report["kl_mean"]) < 1e-4 and report["n_prompts"] == 16


def test_sft_end_to_end(tmp_path: Path, capsys) -> None:
    demos = [{"prompt": p, "response": " wonderful and moving."} for p in SENTIMENT_PROMPTS[:8]]
    data = write_jsonl(tmp_path / "demos.jsonl", demos)
    out = tmp_path / "sft"
    assert (
        main(["sft", str(data), "--num_epochs", "2", "--batch_size", "4", "--no_progress", "--out", str(out)])
        == 0
    )
    assert "SFT done" in capsys.readouterr().out
    AutoModelForCausalLM.from_pretrained(out)


def test_rm_end_to_end_reports_heldout_accuracy(tmp_path: Path, capsys) -> None:
    pairs = [
        {"prompt": p, "chosen": " great fun.", "rejected": " dull and bad."} for p in SENTIMENT_PROMPTS[:20]
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "rm"
    argv = [
        "rm",
        str(data),
        "--epochs",
        "2",
        "--batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--eval_fraction",
        "0.2",
    ]
    assert main([*argv, "--no_progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy 1.000" in printed  # one obvious preference: learned
    settings = json.loads((out / "textrl_reward.json").read_text())
    assert settings["training"]["eval_pairs"] == 4
    # The reward model it wrote trains a policy.
    assert (
        main(
            ["train", "textrl/Preference-v0", "--reward_model", str(out), *TINY, "--out", str(tmp_path / "r")]
        )
        == 0
    )


def test_missing_and_malformed_data_files(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.jsonl"
    assert str(missing) in error_of(capsys, ["sft", str(missing)])
    assert "not found" in error_of(capsys, ["rm", str(missing)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": 3}\n')
    message = error_of(capsys, ["rm", str(bad)])
    assert f"{bad}:2:" in message and "fix or delete" in message
    bad.write_text('{"prompt": "a", "response": "b"}\nnot json\n')
    assert f"{bad}:2: invalid JSON" in error_of(capsys, ["sft", str(bad)])
    assert "prompts file" in error_of(capsys, ["train", "textrl/Sentiment-v0", "--prompts", str(missing)])


def test_unknown_env_agent_and_setting(tmp_path: Path, capsys) -> None:
    message = error_of(capsys, ["train", "textrl/Sentimnet-v0"])
    assert (
        "unknown env id 'textrl/Sentimnet-v0'" in message and "Did you mean 'textrl/Sentiment-v0'?" in message
    )
    message = error_of(capsys, ["train", "textrl/Sentiment-v0", "--agent", "rlo"])
    assert "unknown agent 'rlo'" in message and "Did you mean 'rloo'?" in message
    assert "reinforce, rloo, ppo" in message
    assert "'k' is not a setting of TrainArguments / PPOConfig" in error_of(
        capsys, ["train", "textrl/Sentiment-v0", "--agent", "ppo", "--k", "8"]
    )
    assert "no env id and no --model" in error_of(capsys, ["train"])
    config = tmp_path / "c.toml"
    config.write_text("learning_rat = 0.1\n")
    assert "Did you mean 'learning_rate'?" in error_of(
        capsys, ["train", "textrl/Sentiment-v0", "--config", str(config)]
    )


def test_a_reward_model_path_that_is_not_a_sequence_classifier(tmp_path: Path, capsys) -> None:
    message = error_of(capsys, ["train", "textrl/Preference-v0", "--reward_model", DEFAULT_MODEL_ID, *TINY])
    assert DEFAULT_MODEL_ID in message and "GPT2LMHeadModel, not a sequence classifier" in message
    assert "textrl rm" in message


def test_a_run_directory_that_holds_a_run_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "textrl/Sentiment-v0", *TINY, "--out", str(out)]) == 0
    before = (out / "train.json").read_text()
    message = error_of(capsys, ["train", "textrl/Sentiment-v0", *TINY, "--out", str(out)])
    assert "already holds a training run" in message and "--overwrite" in message
    assert (out / "train.json").read_text() == before
    assert main(["train", "textrl/Sentiment-v0", *TINY, "--out", str(out), "--overwrite"]) == 0


def test_the_console_command_shows_user_errors_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "train", "textrl/Nope-v0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "unknown env id 'textrl/Nope-v0'" in done.stderr and "Traceback" not in done.stderr
