"""The Stable-Baselines3 surface every algorithm shares: checkpoints, callbacks, logging, predict."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import RLOO, BaseCallback, CheckpointError
from tests.agents.test_rloo import PROMPTS, a_fraction, make_env


def parameters(agent: RLOO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.policy.parameters()]


def test_save_load_continue_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    steps = 8 * 6 * 2  # two rollouts of 8 rows x up to 6 tokens
    settings = dict(k=4, learning_rate=1e-2, seed=3, verbose=0, kl_target=1.0, normalize_rewards=True)
    straight = RLOO("LMPolicy", make_env(8, kl_coef=0.1), **settings)
    straight.learn(2 * steps)

    first = RLOO("LMPolicy", make_env(8, kl_coef=0.1), **settings)
    first.learn(steps)
    first.save(tmp_path / "ckpt")
    resumed = RLOO.load(tmp_path / "ckpt", env=make_env(8, kl_coef=0.1), verbose=0)
    assert resumed.num_timesteps == first.num_timesteps and resumed.iteration == first.iteration
    assert resumed.kl_controller.value == first.kl_controller.value
    resumed.learn(steps, reset_num_timesteps=False)

    assert resumed.num_timesteps == straight.num_timesteps
    for a, b in zip(parameters(straight), parameters(resumed), strict=True):
        assert torch.equal(a, b)
    assert resumed.kl_controller.value == straight.kl_controller.value


def test_checkpoint_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    class OtherAlgo(RLOO):
        algo_name = "OtherAlgo"

    RLOO("LMPolicy", make_env(8), k=4, verbose=0).save(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="RLOO"):
        OtherAlgo.load(tmp_path / "ckpt", env=make_env(8))


def test_corrupted_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    RLOO("LMPolicy", make_env(8), k=4, verbose=0).save(tmp_path / "ckpt")
    state = tmp_path / "ckpt" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="trainer_state.pt"):
        RLOO.load(tmp_path / "ckpt", env=make_env(8))


def test_callback_returning_false_stops_training() -> None:
    class StopAfter(BaseCallback):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n

        def _on_step(self) -> bool:
            return self.n_calls < self.n

    agent = RLOO("LMPolicy", make_env(8), k=4, verbose=0)
    callback = StopAfter(3)
    agent.learn(10_000, callback=callback)
    assert callback.n_calls == 3
    assert agent.num_timesteps == 3 * 8  # SB3's unit: env steps x rows
    assert agent.iteration == 0  # stopped inside the first rollout, before any update


def test_logs_namespaced_keys_to_csv(tmp_path: Path) -> None:
    agent = RLOO("LMPolicy", make_env(8), k=4, verbose=0, tensorboard_log=tmp_path)
    agent.learn(8 * 6 * 2)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for key in ("rollout/score_mean", "rollout/kl_mean", "train/policy_loss", "train/approx_kl",
                "train/clip_fraction", "train/kl_coef", "time/tokens_per_s"):  # fmt: skip
        assert key in rows[0] and np.isfinite(float(rows[-1][key]))
    assert list(tmp_path.glob("events.out.tfevents*"))


def test_a_resumed_run_appends_to_progress_csv(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    first = RLOO("LMPolicy", make_env(8), k=4, verbose=0, tensorboard_log=logs)
    first.learn(8 * 6)
    first.save(tmp_path / "ckpt")
    with open(logs / "progress.csv") as f:
        before = list(csv.DictReader(f))
    resumed = RLOO.load(tmp_path / "ckpt", env=make_env(8), verbose=0, tensorboard_log=logs)
    resumed.learn(8 * 6, reset_num_timesteps=False)
    with open(logs / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert before and rows[: len(before)] == before and len(rows) > len(before)  # the first run's rows kept
    steps = [int(row["step"]) for row in rows]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


def test_predict_single_and_batched_observations() -> None:
    agent = RLOO("LMPolicy", make_env(8), k=4, verbose=0)
    obs, _ = agent.env.reset(seed=0)
    batched, state = agent.predict(obs, deterministic=True)
    assert state is None and batched.shape == (8,)
    single = {key: value[0].cpu().numpy() for key, value in obs.items()}
    action, _ = agent.predict(single, deterministic=True)
    assert np.ndim(action) == 0 and action == batched[0]
    assert torch.equal(torch.as_tensor(batched), agent.env.next_token_logits.argmax(-1))


def test_evaluate_leaves_training_streams_untouched() -> None:
    agent = RLOO("LMPolicy", make_env(8), k=4, seed=0, verbose=0)
    state = agent.generator.get_state()
    result = agent.evaluate(PROMPTS, n_samples=3)
    assert len(result.completions) == 9 and result.scores.shape == (9,)
    assert result.scores.tolist() == pytest.approx(a_fraction(result.prompts, result.completions))
    assert torch.equal(agent.generator.get_state(), state)


def test_seed_makes_freshly_initialised_policy_weights_reproducible() -> None:
    kwargs = dict(k=4, seed=5, verbose=0, policy_kwargs={"value_head_init_std": 0.5})
    a = RLOO("LMActorCriticPolicy", make_env(8), **kwargs)
    b = RLOO("LMActorCriticPolicy", make_env(8), **kwargs)
    assert torch.equal(a.policy.value_head.weight, b.policy.value_head.weight)
    assert a.policy.value_head.weight.abs().sum() > 0


def test_policy_class_must_be_a_module() -> None:
    class NotAModule:
        def forward(self, obs): ...
        def act(self, obs): ...
        def evaluate_actions(self, obs, actions): ...
        def predict_values(self, obs): ...

    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        RLOO(NotAModule, make_env(8), verbose=0)


def test_the_optimizer_is_torchs_fused_adam_on_cpu_float32() -> None:
    agent = RLOO("LMPolicy", make_env(4), k=2, verbose=0)
    assert isinstance(agent.optimizer, torch.optim.Adam) and agent.optimizer.defaults["fused"] is True


def test_loading_an_optimizer_state_keeps_the_kernel_this_optimizer_chose() -> None:
    from agents.update_steps import load_optimizer_state

    agent = RLOO("LMPolicy", make_env(4), k=2, verbose=0)
    state = agent.optimizer.state_dict()
    for group in state["param_groups"]:
        group["fused"] = None  # as a checkpoint from before fused Adam, or from sharded parameters
    load_optimizer_state(agent.optimizer, state)
    assert all(group["fused"] is True for group in agent.optimizer.param_groups)
