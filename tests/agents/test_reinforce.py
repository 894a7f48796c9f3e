"""REINFORCE: config validation, the three baselines, the update's gradient, and checkpoints of the baseline."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch

import agents.reinforce as reinforce_module
from agents.reinforce import REINFORCE, REINFORCEConfig
from tests.agents.test_ppo import Spy, capture_gradients, make_env, make_episodes, unshuffle

LENGTHS = [4, 2, 3, 1]
SCORES = [1.0, -0.5, 0.25, 0.75]


def batch(env: Any, scores: list[float] = SCORES, seed: int = 0, noise: float = 0.0) -> Any:
    kl = torch.rand(4, 4, generator=torch.Generator().manual_seed(seed))
    return make_episodes(env, LENGTHS, scores, kl, logprob_noise=noise, seed=seed)


def update(agent: REINFORCE, episodes: Any) -> dict[str, Any]:
    agent.policy.train()
    return agent._update(episodes, agent._sequence_rewards(episodes))


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"baseline": "mean"}, "baseline must be one of"),
        ({"baseline_decay": 1.0}, "baseline_decay must be in"),
        ({"baseline_decay": -0.1}, "baseline_decay must be in"),
        ({"vf_coef": -1.0}, "vf_coef"),
        ({"learning_rate": 0.0}, "learning_rate"),
    ],
)
def test_bad_config_is_refused(setting: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        REINFORCEConfig(**setting)


def test_learned_baseline_needs_a_value_head() -> None:
    with pytest.raises(
        ValueError, match="baseline='learned' needs a policy with a value head.*LMActorCriticPolicy"
    ):
        REINFORCE("LMPolicy", make_env(), baseline="learned", verbose=0)


def test_minibatch_that_does_not_divide_the_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="does not divide into minibatches of 3"):
        REINFORCE("LMPolicy", make_env(num_envs=4), minibatch_size=3, verbose=0)


# --------------------------------------------------------------------------- baselines


def test_moving_average_baseline_comes_from_earlier_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(kl_coef=0.0)  # rewards are then the scores themselves
    agent = REINFORCE("LMPolicy", env, baseline_decay=0.5, verbose=0)
    spy = Spy(reinforce_module.clipped_policy_loss)
    monkeypatch.setattr(reinforce_module, "clipped_policy_loss", spy)
    first, second, third = (batch(env, s) for s in ([1.0, 0.0, 0.5, 0.5], [0.0, 1.0, 1.0, 0.0], SCORES))
    stats = [update(agent, first), update(agent, second), update(agent, third)]
    # b_1 = 0 (nothing seen yet), b_2 = mean(first) = 0.5, b_3 = 0.5 * 0.5 + 0.5 * mean(second) = 0.5
    assert [s["train/baseline"] for s in stats] == [0.0, 0.5, 0.5]
    for call, episodes, b in zip(spy.calls, (first, second, third), (0.0, 0.5, 0.5), strict=True):
        torch.testing.assert_close(unshuffle(call, episodes)["advantages"], episodes.scores - b)
    assert agent.baseline.value == pytest.approx(0.5 * 0.5 + 0.5 * sum(SCORES) / 4)


def test_no_baseline_uses_the_rewards_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(kl_coef=0.3)
    agent = REINFORCE("LMPolicy", env, baseline="none", verbose=0)
    spy = Spy(reinforce_module.clipped_policy_loss)
    monkeypatch.setattr(reinforce_module, "clipped_policy_loss", spy)
    for seed in (0, 1):
        episodes = batch(env, seed=seed)
        update(agent, episodes)
        expected = episodes.scores - 0.3 * episodes.kl.sum(-1)
        torch.testing.assert_close(unshuffle(spy.calls[-1], episodes)["advantages"], expected)


def test_normalized_advantages_are_whitened(monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env()
    agent = REINFORCE("LMPolicy", env, normalize_advantage=True, verbose=0)
    spy = Spy(reinforce_module.clipped_policy_loss)
    monkeypatch.setattr(reinforce_module, "clipped_policy_loss", spy)
    update(agent, batch(env))
    advantages = spy.calls[0][2]
    assert abs(advantages.mean().item()) < 1e-6 and advantages.std().item() == pytest.approx(1.0, abs=1e-4)


# --------------------------------------------------------------------------- the update's gradient


def test_update_has_the_reinforce_gradient() -> None:
    env = make_env(kl_coef=0.2)
    agent = REINFORCE("LMPolicy", env, baseline="none", verbose=0)
    grads = capture_gradients(agent)
    episodes = batch(env)
    update(agent, episodes)
    # -(r) * log pi(token), averaged over response tokens: the score-function estimator
    ids = torch.cat([episodes.prompt_ids, episodes.response_ids], 1)
    mask = torch.cat([episodes.prompt_mask, episodes.response_mask], 1)
    _, logprobs, _ = agent.policy.evaluate_sequence(ids, mask, episodes.prompt_ids.shape[1])
    m = episodes.response_mask.float()
    rewards = episodes.scores - 0.2 * episodes.kl.sum(-1)
    loss = -(rewards.unsqueeze(1) * logprobs * m).sum() / m.sum()
    agent.optimizer.zero_grad()
    loss.backward()
    expected = {name: p.grad for name, p in agent.policy.named_parameters() if p.grad is not None}
    assert set(grads) == set(expected)
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], atol=1e-7, rtol=1e-4, msg=name)


def test_learned_baseline_gradient_adds_the_value_regression() -> None:
    env = make_env(kl_coef=0.2)
    agent = REINFORCE(
        "LMActorCriticPolicy", env, baseline="learned", vf_coef=0.5,
        policy_kwargs={"value_head_init_std": 0.5}, verbose=0,
    )  # fmt: skip
    grads = capture_gradients(agent)
    episodes = batch(env)
    stats = update(agent, episodes)
    ids = torch.cat([episodes.prompt_ids, episodes.response_ids], 1)
    mask = torch.cat([episodes.prompt_mask, episodes.response_mask], 1)
    values, logprobs, _ = agent.policy.evaluate_sequence(ids, mask, episodes.prompt_ids.shape[1])
    m = episodes.response_mask.float()
    r = (episodes.scores - 0.2 * episodes.kl.sum(-1)).unsqueeze(1)  # (N, 1)
    advantages = (r - values.detach()) * m  # per token: the value of the state before the token
    value_loss = 0.5 * ((values - r) ** 2 * m).sum() / m.sum()
    loss = -(advantages * logprobs * m).sum() / m.sum() + 0.5 * value_loss
    agent.optimizer.zero_grad()
    loss.backward()
    assert stats["train/value_loss"].item() == pytest.approx(value_loss.item(), rel=1e-5)
    expected = {name: p.grad for name, p in agent.policy.named_parameters() if p.grad is not None}
    assert "value_head.weight" in expected and set(grads) == set(expected)
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], atol=1e-7, rtol=1e-4, msg=name)


def test_later_epochs_are_clipped_around_the_sampling_policy() -> None:
    env = make_env()
    agent = REINFORCE("LMPolicy", env, n_epochs=3, minibatch_size=2, learning_rate=1e-2, verbose=0)
    stats = update(agent, batch(env, noise=0.5))
    # the old log-probs are the (perturbed) sampling policy's, so ratios leave the clip range
    assert stats["train/clip_fraction"].item() > 0
    assert torch.isfinite(stats["train/approx_kl"])


# --------------------------------------------------------------------------- learning and checkpoints


@pytest.mark.parametrize(
    ("policy", "baseline"), [("LMPolicy", "moving_average"), ("LMActorCriticPolicy", "learned")]
)
def test_learn_raises_the_reward(tmp_path: Path, policy: str, baseline: str) -> None:
    env = make_env(num_envs=16, max_new_tokens=8, kl_coef=0.01)
    agent = REINFORCE(
        policy, env, seed=0, learning_rate=3e-3, baseline=baseline, tensorboard_log=tmp_path, verbose=0
    )
    agent.learn(total_timesteps=16 * 8 * 40)
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    scores = [float(r["rollout/score_mean"]) for r in rows]
    assert sum(scores[-5:]) / 5 > sum(scores[:5]) / 5 + 0.3, scores


def test_checkpoint_carries_the_baseline_and_continues_exactly(tmp_path: Path) -> None:
    def run(split: bool) -> REINFORCE:
        agent = REINFORCE("LMPolicy", make_env(), seed=5, minibatch_size=2, learning_rate=1e-3, verbose=0)
        agent.learn(total_timesteps=4 * 4 * 3)
        if split:
            agent.save(tmp_path / "reinforce")
            agent = REINFORCE.load(tmp_path / "reinforce", env=make_env(), verbose=0)
        agent.learn(total_timesteps=4 * 4 * 3, reset_num_timesteps=False)
        return agent

    whole, resumed = run(False), run(True)
    assert resumed.baseline.state_dict() == whole.baseline.state_dict()
    assert whole.baseline.count == 6
    for key, value in whole.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[key], value, atol=0, rtol=0, msg=key)


def test_checkpoint_from_another_algorithm_is_refused(tmp_path: Path) -> None:
    from agents.checkpoint import CheckpointError
    from agents.ppo import PPO

    PPO("LMActorCriticPolicy", make_env(), verbose=0).save(tmp_path / "ppo")
    with pytest.raises(CheckpointError, match="written by PPO"):
        REINFORCE.load(tmp_path / "ppo", env=make_env())
