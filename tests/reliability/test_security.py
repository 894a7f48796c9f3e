"""Nothing textrl loads runs code: pickles crafted to execute on load are refused, and run nothing.

Each test writes a file whose unpickling would create a marker file (``__reduce__`` returning a
call), names it like what textrl loads (``trainer_state.pt``, ``pytorch_model.bin``, ``optimizer.pt``,
``*.bin``), asks textrl to load it, and checks that loading fails with a message and that the
marker file was NOT created.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from agents import REINFORCE
from agents.checkpoint import CheckpointError
from reward_models import LearnedRewardModel
from tests.agents.test_ppo import make_env
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv

REPO = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this calls ``Path(marker).touch()``: what an attacker's checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (os.system, (f"touch {self.marker}",))


def write_payload(path: Path, marker: Path) -> None:
    """A torch-style zip checkpoint whose pickle runs the payload (``torch.save`` of an object)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": Payload(marker)}, path)


def write_raw_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Payload(marker)))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "PWNED"
    assert not path.exists()
    return path


def test_the_payload_does_run_when_unpickled(tmp_path: Path, marker: Path) -> None:
    """The control: the crafted file really would run code, so the refusals below mean something."""
    write_raw_pickle(tmp_path / "x.bin", marker)
    pickle.loads((tmp_path / "x.bin").read_bytes())  # noqa: S301 - the point of the control
    assert marker.exists()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    agent = REINFORCE("LMPolicy", make_env(), seed=0, verbose=0)
    agent.save(tmp_path / "ckpt")
    return tmp_path / "ckpt"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the raw pickle's protocol
@pytest.mark.parametrize("writer", [write_payload, write_raw_pickle], ids=["torch_save", "raw_pickle"])
def test_a_checkpoint_state_that_needs_pickle_is_refused(checkpoint: Path, marker: Path, writer: Any) -> None:
    writer(checkpoint / "trainer_state.pt", marker)
    with pytest.raises(CheckpointError, match=r"trainer_state.pt"):
        REINFORCE.load(checkpoint, make_env(), verbose=0)
    assert not marker.exists()


def test_a_checkpoint_model_as_a_pickled_pytorch_model_bin_is_refused(checkpoint: Path, marker: Path) -> None:
    model_dir = checkpoint / "model"
    for weights in model_dir.glob("*.safetensors"):
        weights.unlink()
    write_payload(model_dir / "pytorch_model.bin", marker)
    with pytest.raises((CheckpointError, OSError, ValueError), match=r"(?i)safetensors|pickle|weights"):
        REINFORCE.load(checkpoint, make_env(), verbose=0)
    assert not marker.exists()


def test_an_extra_optimizer_pt_in_a_checkpoint_is_never_read(checkpoint: Path, marker: Path) -> None:
    write_raw_pickle(checkpoint / "optimizer.pt", marker)
    REINFORCE.load(checkpoint, make_env(), verbose=0)
    assert not marker.exists()


def saved_model_dir(tmp_path: Path, kind: str) -> Path:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = build_char_tokenizer()
    folder = tmp_path / kind
    if kind == "reward":
        config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_head=2, n_embd=32, n_positions=64,
                            num_labels=1, pad_token_id=0)  # fmt: skip
        GPT2ForSequenceClassification(config).save_pretrained(folder)
    else:
        build_tiny_lm(vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    return folder


def test_a_reward_model_saved_as_a_pickle_is_refused(tmp_path: Path, marker: Path) -> None:
    folder = saved_model_dir(tmp_path, "reward")
    write_payload(folder / "pytorch_model.bin", marker)
    with pytest.raises(ValueError, match=r"refusing to load .*needs pickle.*nothing from the file was run"):
        LearnedRewardModel.from_pretrained(folder)
    assert not marker.exists()


def test_a_policy_model_saved_as_a_pickle_is_refused(tmp_path: Path, marker: Path) -> None:
    folder = saved_model_dir(tmp_path, "policy")
    write_payload(folder / "pytorch_model.bin", marker)
    with pytest.raises(ValueError, match=r"refusing to load .*needs pickle.*safe_serialization=True"):
        TextGenerationVectorEnv(
            str(folder), prompts=["ab"], reward_model=lambda p, c: [0.0] * len(c), num_envs=1
        )
    assert not marker.exists()


PACKAGES = ["agents", "reward_models", "textrl_env"]


def python_files() -> list[Path]:
    return [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]


def test_no_eval_exec_or_pickle_in_the_packages() -> None:
    pattern = re.compile(
        r"(?<![\w.`])(eval|exec)\(|\bimport pickle\b|\bpickle\.load|\bdill\b|\bmarshal\.load"
    )
    offenders = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in python_files()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []


def test_every_torch_load_is_weights_only() -> None:
    calls = [
        (path, line)
        for path in python_files()
        for line in path.read_text(encoding="utf-8").splitlines()
        if "torch.load(" in line and not line.lstrip().startswith(("#", '"', "trainer_state"))
    ]
    assert calls and all("weights_only=True" in line for _, line in calls), calls


def test_trust_remote_code_is_never_turned_on_by_textrl() -> None:
    """No call passes trust_remote_code=True on its own; it reaches transformers only when the user passes it."""
    hits = [
        f"{path.relative_to(REPO)}: {line.strip()}"
        for path in python_files()
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.search(r"trust_remote_code\s*=\s*True", line)
    ]
    assert hits == []


def test_a_model_with_custom_code_is_not_run_without_trust_remote_code(tmp_path: Path, marker: Path) -> None:
    """A model folder whose config asks for its own Python code: loading it through textrl does not import it."""
    folder = tmp_path / "remote"
    build_tiny_lm(vocab_size=len(build_char_tokenizer())).save_pretrained(folder)
    build_char_tokenizer().save_pretrained(folder)
    (folder / "evil_model.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    config = (folder / "config.json").read_text()
    config = config.replace('"model_type": "gpt2"', '"model_type": "evil", "auto_map": {"AutoModelForCausalLM": '
                            '"evil_model.EvilModel", "AutoConfig": "evil_model.EvilConfig"}')  # fmt: skip
    (folder / "config.json").write_text(config)
    with pytest.raises((ValueError, OSError, KeyError)):
        TextGenerationVectorEnv(
            str(folder), prompts=["ab"], reward_model=lambda p, c: [0.0] * len(c), num_envs=1
        )
    assert not marker.exists()
    shutil.rmtree(folder)
