from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.checkpoint import (
    CheckpointError,
    atomic_directory,
    get_rng_state,
    load_checkpoint,
    load_policy_weights,
    save_checkpoint,
    set_rng_state,
)
from agents.policies import LMActorCriticPolicy, LMPolicy


@dataclass
class TinyConfig:
    learning_rate: float = 1e-3
    device: torch.device = torch.device("cpu")
    run_dir: Path = Path("runs/x")


def _train_step(policy: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    mask = torch.ones_like(ids)
    values, logprobs, _ = policy.evaluate_sequence(ids, mask, 3)
    loss = -logprobs.mean() + values.square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _save(path: Path, policy: nn.Module, optimizer: torch.optim.Optimizer, **kwargs: object) -> Path:
    return save_checkpoint(
        path,
        algo_name="PPO",
        policy=policy,
        optimizer=optimizer,
        kl_controller_state={"value": 0.07, "target": 6.0},
        counters={"num_timesteps": 128, "iteration": 2},
        config=TinyConfig(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_save_load_continue_is_exact(tmp_path: Path, make_tiny_lm, char_tokenizer) -> None:  # noqa: ANN001
    vocab = len(char_tokenizer)
    policy = LMActorCriticPolicy(make_tiny_lm(vocab, seed=0), char_tokenizer, value_head_init_std=0.1)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2, eps=1e-5)
    _train_step(policy, optimizer)
    _save(tmp_path / "ckpt", policy, optimizer, extra={"baseline": torch.tensor(0.5)})

    _train_step(policy, optimizer)  # the uninterrupted run's next update
    expected = _params(policy)

    ckpt = load_checkpoint(tmp_path / "ckpt", expected_algo="PPO")
    assert ckpt.counters == {"num_timesteps": 128, "iteration": 2}
    assert ckpt.kl_controller_state == {"value": 0.07, "target": 6.0}
    assert ckpt.config == {"learning_rate": 1e-3, "device": "cpu", "run_dir": "runs/x"}
    assert ckpt.extra["baseline"].item() == 0.5
    resumed = LMActorCriticPolicy(make_tiny_lm(vocab, seed=1), char_tokenizer)  # different init
    ckpt.load_policy(resumed)
    resumed_opt = torch.optim.AdamW(resumed.parameters(), lr=1e-2, eps=1e-5)
    resumed_opt.load_state_dict(ckpt.optimizer_state)
    _train_step(resumed, resumed_opt)
    got = _params(resumed)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_model_dir_is_a_transformers_checkpoint(tmp_path: Path, make_tiny_lm, char_tokenizer) -> None:  # noqa: ANN001
    policy = LMPolicy(make_tiny_lm(len(char_tokenizer)), char_tokenizer)
    save_checkpoint(tmp_path / "ckpt", algo_name="RLOO", policy=policy)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ckpt" / "model")
    assert tokenizer("ab")["input_ids"] == char_tokenizer("ab")["input_ids"]
    assert torch.equal(model.transformer.wte.weight, policy.model.transformer.wte.weight)
    assert (tmp_path / "ckpt" / "model" / "model.safetensors").is_file()
    meta = json.loads((tmp_path / "ckpt" / "textrl_checkpoint.json").read_text())
    assert meta["algo"] == "RLOO" and meta["policy"]["layout"] == "pretrained"


def test_rng_state_round_trip_is_weights_only(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(5)
    state = get_rng_state({"sampler": gen})
    draws = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    torch.save(state, tmp_path / "rng.pt")
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), {"sampler": gen})
    again = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    assert draws == again


def test_wrong_algorithm_is_refused(tmp_path: Path, tiny_lm: nn.Module) -> None:
    save_checkpoint(tmp_path / "ckpt", algo_name="PPO", policy=LMPolicy(tiny_lm))
    with pytest.raises(ValueError, match=r"this checkpoint was written by PPO; load it with PPO\.load"):
        load_checkpoint(tmp_path / "ckpt", expected_algo="RLOO")


def test_damaged_and_missing_files_are_named(tmp_path: Path, tiny_lm: nn.Module) -> None:
    policy = LMPolicy(tiny_lm)
    root = save_checkpoint(tmp_path / "ckpt", algo_name="PPO", policy=policy)
    state = root / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"could not read .*trainer_state\.pt.*re-save the checkpoint"):
        load_checkpoint(root)
    weights = root / "model" / "model.safetensors"
    weights.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"could not read .*model.*re-save"):
        load_policy_weights(root, policy)
    (root / "textrl_checkpoint.json").write_text("{ truncated")
    with pytest.raises(CheckpointError, match=r"could not read .*textrl_checkpoint\.json"):
        load_checkpoint(root)
    (root / "textrl_checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match="textrl_checkpoint.json is missing"):
        load_checkpoint(root)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")


def test_interrupted_save_keeps_the_previous_checkpoint(
    tmp_path: Path, tiny_lm: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = LMPolicy(tiny_lm)
    save_checkpoint(tmp_path / "ckpt", algo_name="PPO", policy=policy, counters={"num_timesteps": 1})
    real_save = torch.save

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ckpt", algo_name="PPO", policy=policy, counters={"num_timesteps": 2})
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path / "ckpt").counters == {"num_timesteps": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp directory left
    save_checkpoint(tmp_path / "ckpt", algo_name="PPO", policy=policy, counters={"num_timesteps": 3})
    assert load_checkpoint(tmp_path / "ckpt").counters == {"num_timesteps": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_unloadable_values_are_refused_at_save_time(tmp_path: Path, tiny_lm: nn.Module) -> None:
    policy = LMPolicy(tiny_lm)
    with pytest.raises(
        TypeError, match=r"trainer_state\['extra'\]\['buf'\] is a numpy.ndarray.*torch.as_tensor"
    ):
        save_checkpoint(tmp_path / "c", algo_name="PPO", policy=policy, extra={"buf": np.zeros(3)})
    with pytest.raises(TypeError, match=r"config\['fn'\] is a function"):
        save_checkpoint(tmp_path / "c", algo_name="PPO", policy=policy, config={"fn": lambda: 0})
    assert not (tmp_path / "c").exists()
    with pytest.raises(FileExistsError, match="is not a directory"):
        (tmp_path / "file").write_text("x")
        with atomic_directory(tmp_path / "file"):
            pass


def test_lora_and_plain_module_policies_round_trip(tmp_path: Path, make_tiny_lm) -> None:  # noqa: ANN001
    pytest.importorskip("peft")
    lora = {"r": 4, "target_modules": ["c_attn"], "fan_in_fan_out": True}
    policy = LMActorCriticPolicy(make_tiny_lm(seed=0), lora_config=lora, value_head_init_std=0.1)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_()
    save_checkpoint(tmp_path / "lora", algo_name="PPO", policy=policy)
    assert (tmp_path / "lora" / "model" / "adapter_model.safetensors").is_file()
    fresh = LMActorCriticPolicy(make_tiny_lm(seed=0), lora_config=lora)
    load_policy_weights(tmp_path / "lora", fresh)
    for (k, a), (_, b) in zip(policy.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), k

    plain = nn.Sequential(nn.Linear(3, 2))
    save_checkpoint(tmp_path / "plain", algo_name="REINFORCE", policy=plain)
    other = nn.Sequential(nn.Linear(3, 2))
    load_policy_weights(tmp_path / "plain", other)
    assert torch.equal(other[0].weight, plain[0].weight)
    with pytest.raises(CheckpointError, match="do not fit this Sequential"):
        load_policy_weights(tmp_path / "plain", nn.Sequential(nn.Linear(4, 2)))
