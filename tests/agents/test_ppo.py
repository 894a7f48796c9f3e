"""PPO: config validation, per-token rewards, GAE advantages and the update's gradient, against hand-built answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import agents.ppo as ppo_module
from agents.collect import Episodes
from agents.ppo import PPO, PPOConfig, explained_variance
from tests.conftest import EOS, build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv
from textrl_env.logprobs import sequence_logprobs

PROMPTS = ["hello", "abc", "the cat", "xyz"]


def a_count_reward(prompts: list[str], completions: list[str]) -> list[float]:
    """Share of the letter 'a' in each completion: something a tiny random model can learn."""
    return [c.count("a") / max(len(c), 1) for c in completions]


def make_env(num_envs: int = 4, max_new_tokens: int = 4, kl_coef: float = 0.1) -> TextGenerationVectorEnv:
    tokenizer = build_char_tokenizer()
    model = build_tiny_lm(vocab_size=len(tokenizer))
    return TextGenerationVectorEnv(
        model, tokenizer, prompts=PROMPTS, reward_model=a_count_reward, num_envs=num_envs,
        max_new_tokens=max_new_tokens, kl_coef=kl_coef,
    )  # fmt: skip


def make_episodes(
    env: TextGenerationVectorEnv,
    lengths: list[int],
    scores: list[float],
    kl: torch.Tensor,
    logprob_noise: float = 0.0,
    seed: int = 0,
) -> Episodes:
    """A hand-made batch: random response tokens of the given lengths (the last one EOS when shorter
    than the limit), the given scores and per-token KL, and the model's own log-probs (optionally
    perturbed, so that the PPO ratio is not 1)."""
    n, t = len(lengths), env.max_new_tokens
    g = torch.Generator().manual_seed(seed)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    prompt_ids, prompt_mask = env.core.encode_prompt_batch(prompts)  # (N, P)
    response_ids = torch.randint(3, env.single_action_space.n, (n, t), generator=g)  # (N, T)
    response_mask = torch.zeros((n, t), dtype=torch.long)
    for row, length in enumerate(lengths):
        response_mask[row, :length] = 1
        if length < t:
            response_ids[row, length - 1] = EOS
            response_ids[row, length:] = 0
    ids = torch.cat([prompt_ids, response_ids], 1)
    mask = torch.cat([prompt_mask, response_mask], 1)
    with torch.no_grad():
        logprobs = sequence_logprobs(env.model, ids, mask, prompt_ids.shape[1], env.temperature)
    logprobs = (logprobs + logprob_noise * torch.randn((n, t), generator=g)) * response_mask
    return Episodes(
        prompts=prompts,
        completions=[""] * n,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        logprobs=logprobs,
        ref_logprobs=torch.zeros((n, t)),
        kl=kl * response_mask,
        scores=torch.tensor(scores),
        env_steps=t,
    )


class Spy:
    """Wraps a function and keeps the arguments of every call."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, []

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.fn(*args)


def unshuffle(call: tuple, episodes: Episodes) -> dict[str, torch.Tensor]:
    """The ``(logprobs, old_logprobs, advantages, mask)`` of a spied loss call in the episodes' row order.

    Minibatches are shuffled; the old log-probs (distinct per row) tell which episode each row is.
    """
    rows = [
        next(i for i in range(len(episodes.logprobs)) if torch.equal(episodes.logprobs[i], row))
        for row in call[1]
    ]
    order = torch.argsort(torch.tensor(rows))
    return {name: call[k][order] for k, name in enumerate(("logprobs", "old_logprobs", "advantages", "mask"))}


def capture_gradients(agent: Any) -> dict[str, torch.Tensor]:
    """Replace the agent's optimizer step by one that only records the gradient of the loss."""
    grads: dict[str, torch.Tensor] = {}

    def step(loss: torch.Tensor) -> torch.Tensor:
        agent.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name, param in agent.policy.named_parameters():
            if param.grad is not None:
                grads[name] = grads.get(name, 0) + param.grad.detach().clone()
        agent.optimizer.zero_grad(set_to_none=True)
        return torch.zeros(())

    agent.step_optimizer = step
    return grads


def hand_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """GAE with gamma = 1, written out per row so it shares no code with agents.advantages."""
    out = torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        length = int(mask[b].sum())
        running = 0.0
        for t in reversed(range(length)):
            next_value = values[b, t + 1] if t + 1 < length else 0.0
            delta = rewards[b, t] + next_value - values[b, t]
            running = delta + lam * running
            out[b, t] = running
    return out


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"gamma": 1.5}, "gamma must be in"),
        ({"gae_lambda": -0.1}, "gae_lambda must be in"),
        ({"vf_coef": -1.0}, "vf_coef"),
        ({"ent_coef": float("nan")}, "ent_coef"),
        ({"clip_range_vf": 0.0}, "clip_range_vf"),
        ({"target_kl": -0.01}, "target_kl"),
        ({"n_epochs": 0}, "n_epochs"),
    ],
)
def test_bad_config_is_refused(setting: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PPOConfig(**setting)


def test_config_defaults_follow_the_rlhf_recipe() -> None:
    config = PPOConfig()
    assert (config.n_epochs, config.gamma, config.gae_lambda) == (4, 1.0, 0.95)
    assert (config.vf_coef, config.clip_range_vf, config.target_kl) == (0.1, 0.2, None)


def test_minibatch_that_does_not_divide_the_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="does not divide into minibatches of 3"):
        PPO("LMActorCriticPolicy", make_env(num_envs=4), minibatch_size=3, verbose=0)


def test_misspelt_setting_suggests_the_right_one() -> None:
    with pytest.raises(TypeError, match="Did you mean 'target_kl'"):
        PPO("LMActorCriticPolicy", make_env(), target_kll=0.1, verbose=0)


def test_policy_without_values_is_refused() -> None:
    with pytest.raises(ValueError, match="PPO needs a policy with a value head.*LMActorCriticPolicy"):
        PPO("LMPolicy", make_env(), verbose=0)


# --------------------------------------------------------------------------- rewards and advantages


def test_explained_variance_known_answer() -> None:
    returns = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    # residuals 0, 1, 0, 1 (var 0.25) against returns 1..4 (var 1.25): 1 - 0.25 / 1.25
    values = torch.tensor([[1.0, 1.0, 0.0], [3.0, 3.0, 0.0]])
    assert explained_variance(values, returns, mask).item() == pytest.approx(0.8)
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert torch.isnan(explained_variance(values, torch.ones_like(returns), mask))


@pytest.mark.parametrize(
    "settings",
    [{}, {"missing_eos_penalty": 0.5}, {"normalize_rewards": True, "missing_eos_penalty": 1.0}],
)
def test_token_rewards_sum_to_the_sequence_reward(settings: dict[str, Any]) -> None:
    env = make_env()
    agent = PPO("LMActorCriticPolicy", env, verbose=0, **settings)
    kl = torch.tensor(
        [[0.2, 0.4, 0.1, 0.3], [0.5, -0.1, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1], [0.3, 0.0, 0.0, 0.0]]
    )
    episodes = make_episodes(env, [4, 2, 4, 1], [1.0, -0.5, 0.25, 0.75], kl)
    rewards = agent._sequence_rewards(episodes)
    token_rewards = agent._token_rewards(episodes, rewards)
    torch.testing.assert_close(token_rewards.sum(-1), rewards.total)
    # Every token but the last pays -kl_coef * KL, scaled like the whole return.
    scale = float(agent.reward_stats.std) if settings.get("normalize_rewards") else 1.0
    expected_kl_part = -0.1 * kl[0, :3] / scale
    torch.testing.assert_close(token_rewards[0, :3], expected_kl_part)
    assert (token_rewards[1, 2:] == 0).all() and (token_rewards[3, 1:] == 0).all()


def test_advantages_fed_to_the_loss_are_gae_of_shaped_rewards(monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(num_envs=2, max_new_tokens=3, kl_coef=0.5)
    # value head starts at 0 (value_head_init_std=0), so GAE reduces to lambda-discounted reward sums
    agent = PPO("LMActorCriticPolicy", env, n_epochs=1, normalize_advantage=False, verbose=0)
    spy = Spy(ppo_module.clipped_policy_loss)
    monkeypatch.setattr(ppo_module, "clipped_policy_loss", spy)
    kl = torch.tensor([[0.2, 0.4, 0.0], [0.1, 0.2, 0.3]])
    episodes = make_episodes(env, [2, 3], [1.0, -1.0], kl)
    agent.policy.train()
    agent._update(episodes, agent._sequence_rewards(episodes))
    advantages = unshuffle(spy.calls[0], episodes)["advantages"]
    # row 0: rewards (-0.1, -0.2 + 1) -> A = (-0.1 + 0.95 * 0.8, 0.8)
    # row 1: rewards (-0.05, -0.1, -0.15 - 1) -> A_2 = -1.15, A_1 = -0.1 + 0.95 * A_2, A_0 = -0.05 + 0.95 * A_1
    a1 = -0.1 + 0.95 * -1.15
    expected = torch.tensor([[-0.1 + 0.95 * 0.8, 0.8, 0.0], [-0.05 + 0.95 * a1, a1, -1.15]])
    torch.testing.assert_close(advantages, expected)


def test_advantages_are_whitened_over_response_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(num_envs=4)
    agent = PPO("LMActorCriticPolicy", env, n_epochs=1, policy_kwargs={"value_head_init_std": 0.5}, verbose=0)
    spy = Spy(ppo_module.clipped_policy_loss)
    monkeypatch.setattr(ppo_module, "clipped_policy_loss", spy)
    episodes = make_episodes(env, [4, 2, 3, 1], [1.0, -0.5, 0.25, 0.75], torch.rand(4, 4))
    agent.policy.train()
    agent._update(episodes, agent._sequence_rewards(episodes))
    (_, _, advantages, mask, _) = spy.calls[0]  # whitening is over the whole batch, so order is moot
    kept = advantages[mask.bool()]
    assert abs(kept.mean().item()) < 1e-5 and kept.std().item() == pytest.approx(1.0, abs=1e-4)
    assert (advantages[~mask.bool()] == 0).all()


# --------------------------------------------------------------------------- the update


def test_one_epoch_update_has_the_gradient_of_a_hand_built_loss() -> None:
    env = make_env(num_envs=4, kl_coef=0.2)
    agent = PPO(
        "LMActorCriticPolicy", env, n_epochs=1, clip_range=0.1, clip_range_vf=0.05, vf_coef=0.3,
        ent_coef=0.01, policy_kwargs={"value_head_init_std": 0.5}, verbose=0,
    )  # fmt: skip
    grads = capture_gradients(agent)
    # Old values away from the current ones (as after a few minibatches), so the value clip binds too.
    rollout_values = agent._rollout_values
    shift = 0.2 * torch.randn(4, 4, generator=torch.Generator().manual_seed(2))
    agent._rollout_values = lambda *args: (rollout_values(*args) + shift) * episodes.response_mask
    kl = torch.rand(4, 4, generator=torch.Generator().manual_seed(1))
    # perturbed old log-probs: ratios away from 1, so the policy clip binds on some tokens
    episodes = make_episodes(env, [4, 2, 3, 1], [1.0, -0.5, 0.25, 0.75], kl, logprob_noise=0.3)
    agent.policy.train()
    agent._update(episodes, agent._sequence_rewards(episodes))

    policy: nn.Module = agent.policy
    ids = torch.cat([episodes.prompt_ids, episodes.response_ids], 1)
    mask = torch.cat([episodes.prompt_mask, episodes.response_mask], 1)
    m = episodes.response_mask.float()
    values, logprobs, entropy = policy.evaluate_sequence(ids, mask, episodes.prompt_ids.shape[1])
    old_values = (values.detach() + shift) * m
    rewards = -0.2 * kl * m
    for b, length in enumerate([4, 2, 3, 1]):
        rewards[b, length - 1] += episodes.scores[b]
    adv = hand_gae(rewards, old_values, m, lam=0.95)
    returns = adv + old_values
    kept = adv[m.bool()]
    adv = (adv - kept.mean()) / torch.sqrt(kept.var() + 1e-8) * m
    ratio = torch.exp(logprobs - episodes.logprobs)
    assert ((ratio - 1).abs() * m > 0.1).any(), "the test batch should exercise the policy clip"
    assert ((values - old_values).abs() * m > 0.05).any(), "the test batch should exercise the value clip"
    policy_terms = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.9, 1.1))
    clipped_values = old_values + (values - old_values).clamp(-0.05, 0.05)
    value_terms = torch.maximum((values - returns) ** 2, (clipped_values - returns) ** 2)
    loss = (policy_terms * m).sum() / m.sum() + 0.3 * 0.5 * (value_terms * m).sum() / m.sum()
    loss = loss - 0.01 * (entropy * m).sum() / m.sum()
    agent.optimizer.zero_grad()
    loss.backward()
    expected = {name: p.grad for name, p in policy.named_parameters() if p.grad is not None}
    assert set(grads) == set(expected)
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], atol=1e-6, rtol=1e-4, msg=name)


def test_epochs_and_minibatches_set_the_number_of_steps() -> None:
    env = make_env(num_envs=4)
    agent = PPO("LMActorCriticPolicy", env, n_epochs=3, minibatch_size=2, verbose=0)
    episodes = make_episodes(env, [4, 2, 3, 1], [1.0, -0.5, 0.25, 0.75], torch.zeros(4, 4))
    agent.policy.train()
    stats = agent._update(episodes, agent._sequence_rewards(episodes))
    assert stats["train/n_updates"] == 6
    for key in ("policy_loss", "value_loss", "approx_kl", "clip_fraction", "entropy", "explained_variance"):
        assert torch.isfinite(torch.as_tensor(stats[f"train/{key}"])), key


def test_target_kl_stops_the_epochs_early() -> None:
    env = make_env(num_envs=4)
    episodes = make_episodes(env, [4, 2, 3, 1], [1.0, -0.5, 0.25, 0.75], torch.zeros(4, 4), logprob_noise=1.0)
    agent = PPO("LMActorCriticPolicy", env, n_epochs=4, minibatch_size=2, target_kl=1e-3, verbose=0)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    agent.policy.train()
    stats = agent._update(episodes, agent._sequence_rewards(episodes))
    # the old log-probs are far from the policy's, so the first minibatch already exceeds 1.5 x target
    assert stats["train/n_updates"] == 0
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(value, before[key]), key


# --------------------------------------------------------------------------- learning and checkpoints


def test_learn_raises_the_reward_and_logs_ppo_stats(tmp_path: Path) -> None:
    env = make_env(num_envs=16, max_new_tokens=8, kl_coef=0.01)
    agent = PPO(
        "LMActorCriticPolicy", env, seed=0, learning_rate=3e-3, minibatch_size=8,
        tensorboard_log=tmp_path, verbose=0,
    )  # fmt: skip
    agent.learn(total_timesteps=16 * 8 * 20)
    import csv

    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    for key in ("policy_loss", "value_loss", "approx_kl", "clip_fraction", "entropy", "explained_variance"):
        assert f"train/{key}" in rows[0], key
    scores = [float(r["rollout/score_mean"]) for r in rows]
    assert sum(scores[-3:]) / 3 > sum(scores[:3]) / 3 + 0.3, scores  # ~0.03 -> ~0.75 over seeds 0-3


def test_save_load_continue_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    def run(split: bool) -> dict[str, torch.Tensor]:
        agent = PPO(
            "LMActorCriticPolicy", make_env(), seed=3, minibatch_size=2, learning_rate=1e-3, verbose=0
        )
        agent.learn(total_timesteps=4 * 4 * 2)
        if split:
            agent.save(tmp_path / "ppo")
            agent = PPO.load(tmp_path / "ppo", env=make_env(), verbose=0)
        agent.learn(total_timesteps=4 * 4 * 2, reset_num_timesteps=False)
        return {k: v.clone() for k, v in agent.policy.state_dict().items()}

    whole, resumed = run(False), run(True)
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], atol=0, rtol=0, msg=key)
