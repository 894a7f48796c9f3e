"""GRPO: its update against hand-built losses (KL in the reward, KL in the loss), num_iterations with the
clipped ratio, the batch layout, the checkpoint round trip, and clear errors for bad settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from agents import GRPO, GRPOConfig
from agents.collect import Episodes, collect_episodes
from agents.rewards import SequenceRewards
from reward_models.shaping import kl_penalty
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv

PROMPTS = ["the movie", "i liked", "bb"]
REWARDS = torch.tensor([1.0, 0.0, 0.5, 0.5])
# (r - mean) / (Bessel std + 1e-4) by hand: mean 0.5, std sqrt(0.5 / 3)
GROUP_ADV = torch.tensor([0.5, -0.5, 0.0, 0.0]) / ((0.5 / 3) ** 0.5 + 1e-4)


def a_fraction(prompts: list[str], completions: list[str]) -> list[float]:
    """An easy reward: the share of 'a' characters in the completion."""
    return [c.count("a") / max(len(c), 1) for c in completions]


def make_env(num_envs: int = 8, **kwargs) -> TextGenerationVectorEnv:
    kwargs.setdefault("max_new_tokens", 6)
    return TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, a_fraction, num_envs=num_envs,
                                   **kwargs)  # fmt: skip


def make_agent(num_envs: int = 4, env_kwargs: dict | None = None, **settings) -> GRPO:
    settings.setdefault("num_generations", 4)
    return GRPO("LMPolicy", make_env(num_envs, **(env_kwargs or {})), seed=0, verbose=0, max_grad_norm=0.0,
                **settings)  # fmt: skip


def drift_from_reference(agent: GRPO) -> None:
    """Move the policy away from the env's frozen reference, so the KL term and its gradient are not 0."""
    with torch.no_grad():
        for p in agent.policy.parameters():
            p.add_(0.05 * torch.randn_like(p))


def rollout(agent: GRPO) -> Episodes:
    """A rollout whose responses have different lengths (rows cut short as if they had ended early), so
    per-sequence, per-minibatch and per-batch token normalisers all differ."""
    episodes = collect_episodes(agent.env, ["the movie"] * agent.env.num_envs, None, agent.generator)
    assert isinstance(episodes, Episodes)
    for row, length in ((0, 2), (1, 5), (3, 1)):
        # A causal model's log-probs of the first tokens do not depend on the later ones.
        episodes.response_mask[row, length:] = 0
    lengths = episodes.response_mask.sum(1)
    assert len(set(lengths.tolist())) >= 3, lengths
    return episodes


def given(rewards: torch.Tensor, episodes: Episodes) -> SequenceRewards:
    """Hand-picked sequence rewards (the update only reads ``total``)."""
    return SequenceRewards(
        score=rewards, kl=torch.zeros_like(episodes.kl), kl_coef=0.0, scale=1.0, total=rewards
    )


def policy_logprobs(agent: GRPO, episodes: Episodes, rows: torch.Tensor | None = None) -> torch.Tensor:
    rows = torch.arange(agent.env.num_envs) if rows is None else rows
    ids, mask = episodes.input_ids[rows], episodes.attention_mask[rows]
    return agent.policy.sequence_logprobs(ids, mask, episodes.response_start)


def gradients(loss: torch.Tensor, agent: GRPO) -> list[torch.Tensor]:
    agent.policy.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in agent.policy.parameters()]


def capture_steps(agent: GRPO) -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """Replace the optimizer step by a recorder of (rows, loss, gradients); the weights do not move."""
    steps: list = []
    rows: list[torch.Tensor] = []
    original = agent.iter_minibatches

    def recording(n: int) -> Iterator[torch.Tensor]:
        for idx in original(n):
            rows.append(idx)
            yield idx

    def capture(loss: torch.Tensor) -> torch.Tensor:
        steps.append((rows[-1], loss.detach(), gradients(loss, agent)))
        return torch.tensor(0.0)

    agent.iter_minibatches = recording  # type: ignore[method-assign]
    agent.step_optimizer = capture  # type: ignore[method-assign]
    return steps


def assert_same_gradients(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-4)


def test_rollout_groups_num_generations_samples_per_prompt() -> None:
    agent = GRPO("LMPolicy", make_env(8), num_generations=4, seed=0, verbose=0)
    prompts = agent._rollout_prompts()
    assert len(prompts) == 8
    assert prompts[:4] == [prompts[0]] * 4 and prompts[4:] == [prompts[4]] * 4


def test_kl_in_the_reward_grpo_loss_matches_hand_built_loss() -> None:
    """beta=0: the env's kl_coef is in the reward; loss_type='grpo' averages each sequence, then sequences."""
    agent = make_agent(env_kwargs={"kl_coef": 0.2}, loss_type="grpo")
    assert agent.env.kl_coef == 0.2
    episodes = rollout(agent)
    rewards = agent._sequence_rewards(episodes)
    torch.testing.assert_close(
        rewards.total, episodes.scores - 0.2 * (episodes.kl * episodes.response_mask).sum(-1)
    )

    logprobs = policy_logprobs(agent, episodes)
    mask = episodes.response_mask.float()
    ratio = torch.exp(logprobs - logprobs.detach())  # 1, with the gradient of log pi
    per_token = -GROUP_ADV[:, None] * ratio
    manual = ((per_token * mask).sum(1) / mask.sum(1)).mean()
    want = gradients(manual, agent)

    steps = capture_steps(agent)
    stats = agent._update(episodes, given(REWARDS, episodes))
    assert len(steps) == 1
    torch.testing.assert_close(steps[0][1], manual.detach())
    assert_same_gradients(steps[0][2], want)
    assert float(stats["train/clip_fraction"]) == 0.0 and "train/ref_kl" not in stats


def test_kl_in_the_loss_dr_grpo_matches_hand_built_loss() -> None:
    """beta>0: the reward is the score alone, and beta * k3(ref) joins the loss; dr_grpo's constant normaliser."""
    agent = make_agent(env_kwargs={"kl_coef": 0.2}, beta=0.5, loss_type="dr_grpo", scale_rewards="none")
    assert agent.config.kl_coef == 0.0 and agent.env.kl_coef == 0.0  # the env's 0.2 is overridden
    drift_from_reference(agent)
    episodes = rollout(agent)
    assert float(episodes.kl.abs().sum()) > 0  # the policy is away from the reference
    torch.testing.assert_close(agent._sequence_rewards(episodes).total, episodes.scores)

    logprobs = policy_logprobs(agent, episodes)
    mask = episodes.response_mask.float()
    ratio = torch.exp(logprobs - logprobs.detach())
    log_ref_ratio = episodes.ref_logprobs - logprobs  # k3 = exp(r) - r - 1, as in TRL
    k3 = torch.exp(log_ref_ratio) - log_ref_ratio - 1.0
    advantages = REWARDS - REWARDS.mean()  # scale_rewards="none"
    per_token = -advantages[:, None] * ratio + 0.5 * k3
    manual = (per_token * mask).sum() / (4 * agent.env.max_new_tokens)
    want = gradients(manual, agent)

    steps = capture_steps(agent)
    stats = agent._update(episodes, given(REWARDS, episodes))
    torch.testing.assert_close(steps[0][1], manual.detach())
    assert_same_gradients(steps[0][2], want)
    expected_kl = (kl_penalty(logprobs.detach(), episodes.ref_logprobs, mask, "k3").sum() / mask.sum()).item()
    assert float(stats["train/ref_kl"]) == pytest.approx(expected_kl, rel=1e-5)
    # Without the KL term the gradient differs, so the comparison above can tell the placements apart.
    logprobs = policy_logprobs(agent, episodes)
    ratio = torch.exp(logprobs - logprobs.detach())
    without = gradients((-advantages[:, None] * ratio * mask).sum() / (4 * agent.env.max_new_tokens), agent)
    assert any(not torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(without, want, strict=True))


def test_dapo_normalises_each_minibatch_by_the_batchs_tokens() -> None:
    """loss_type='dapo' with minibatches: sum of the minibatch's token losses / (batch tokens * share)."""
    agent = make_agent(num_envs=8, loss_type="dapo", minibatch_size=2, num_iterations=2, beta=0.1)
    drift_from_reference(agent)
    episodes = rollout(agent)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.9, 0.0, 0.3])
    advantages = (rewards.view(2, 4) - rewards.view(2, 4).mean(1, keepdim=True)) / (
        rewards.view(2, 4).std(1, keepdim=True) + 1e-4
    )
    advantages = advantages.reshape(-1)
    batch_tokens = episodes.response_mask.sum()

    steps = capture_steps(agent)
    agent._update(episodes, given(rewards, episodes))
    assert len(steps) == 2 * 4  # num_iterations passes x 4 minibatches of 2
    assert sorted(torch.cat([rows for rows, _, _ in steps[:4]]).tolist()) == list(range(8))
    for rows, loss, grads in steps:
        logprobs = policy_logprobs(agent, episodes, rows)
        mask = episodes.response_mask[rows].float()
        log_ref_ratio = episodes.ref_logprobs[rows] - logprobs
        k3 = torch.exp(log_ref_ratio) - log_ref_ratio - 1.0
        per_token = -advantages[rows, None] * torch.exp(logprobs - episodes.logprobs[rows]) + 0.1 * k3
        manual = (per_token * mask).sum() / (batch_tokens * len(rows) / 8)
        torch.testing.assert_close(loss, manual.detach(), atol=1e-6, rtol=1e-5)
        assert_same_gradients(grads, gradients(manual, agent))


def test_num_iterations_reuse_the_rollout_with_the_clipped_ratio() -> None:
    """Every pass's loss is the hand-built clip-higher loss against the rollout's (fixed) log-probs."""
    low, high = 0.05, 0.1
    agent = make_agent(num_envs=8, learning_rate=0.05, num_iterations=4, epsilon=low, epsilon_high=high)
    episodes = rollout(agent)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.9, 0.0, 0.3])
    grouped = rewards.view(2, 4)
    advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).reshape(
        -1, 1
    )
    mask = episodes.response_mask.float()
    symmetric_differs = []
    original = agent.step_optimizer

    def checking(loss: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ratio = torch.exp(policy_logprobs(agent, episodes) - episodes.logprobs)

            def dapo(upper: float) -> torch.Tensor:
                per_token = -torch.minimum(ratio * advantages, ratio.clamp(1 - low, 1 + upper) * advantages)
                return (per_token * mask).sum() / mask.sum()

        torch.testing.assert_close(loss.detach(), dapo(high), atol=1e-6, rtol=1e-5)
        symmetric_differs.append(not torch.allclose(dapo(low), dapo(high)))
        return original(loss)

    agent.step_optimizer = checking  # type: ignore[method-assign]
    stats = agent._update(episodes, given(rewards, episodes))
    assert len(symmetric_differs) == 4  # one minibatch (the whole rollout) per pass
    assert any(symmetric_differs)  # the upper bound mattered on a later pass
    assert float(stats["train/approx_kl"]) > 0  # the policy moved away from the sampling policy
    assert float(stats["train/clip_fraction"]) > 0  # and the clip engaged


def test_target_kl_stops_the_passes_early() -> None:
    """Stable-Baselines3's target_kl: the passes end once a minibatch's approx KL exceeds 1.5x it."""
    agent = make_agent(num_envs=8, learning_rate=0.05, num_iterations=6, target_kl=1e-4)
    episodes = rollout(agent)
    stats = agent._update(episodes, given(torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.9, 0.0, 0.3]), episodes))
    assert float(stats["train/stopped_early"]) == 1.0
    assert 1 <= stats["train/n_updates"] < 6


def test_grpo_learns_an_easy_reward_with_the_kl_in_the_loss() -> None:
    env = make_env(16, kl_coef=0.05)
    agent = GRPO("LMPolicy", env, num_generations=4, beta=0.01, learning_rate=3e-3, seed=0, verbose=0)
    before = agent.evaluate(PROMPTS, n_samples=8).score_mean
    agent.learn(total_timesteps=16 * 6 * 80)
    after = agent.evaluate(PROMPTS, n_samples=8).score_mean
    assert after > before + 0.2, (before, after)


def test_checkpoint_round_trip_continues_exactly(tmp_path: Path) -> None:
    settings = {
        "num_generations": 2, "beta": 0.05, "loss_type": "dr_grpo", "epsilon_high": 0.28,
        "num_iterations": 2, "minibatch_size": 2, "scale_rewards": "batch", "learning_rate": 1e-3,
    }  # fmt: skip

    def run(split: bool) -> GRPO:
        agent = GRPO("LMPolicy", make_env(4), seed=3, verbose=0, **settings)
        agent.learn(total_timesteps=4 * 6 * 2)
        if split:
            agent.save(tmp_path / "grpo")
            agent = GRPO.load(tmp_path / "grpo", env=make_env(4), verbose=0)
        agent.learn(total_timesteps=4 * 6 * 2, reset_num_timesteps=False)
        return agent

    whole, resumed = run(False), run(True)
    assert resumed.config == whole.config == GRPOConfig(**settings)
    assert resumed.num_timesteps == whole.num_timesteps and resumed.iteration == whole.iteration == 4
    for key, value in whole.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[key], value, atol=0, rtol=0, msg=key)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_generations": 1}, ValueError, "num_generations must be an int >= 2"),
        ({"num_generations": 3}, ValueError, "num_envs=8 is not a multiple of num_generations=3"),
        ({"loss_type": "ppo"}, ValueError, "loss_type must be one of"),
        ({"scale_rewards": "std"}, ValueError, "scale_rewards must be one of"),
        ({"epsilon": 0.0}, ValueError, "epsilon must be a finite number > 0"),
        ({"epsilon_high": -0.1}, ValueError, "epsilon_high must be a finite number > 0"),
        ({"num_iterations": 0}, ValueError, "num_iterations must be an int >= 1"),
        ({"beta": -1.0}, ValueError, "beta must be a finite number >= 0"),
        ({"beta": 0.1, "kl_coef": 0.05}, ValueError, "choose one: beta=0"),
        ({"beta": 0.1, "kl_target": 6.0}, ValueError, "adapts the reward's KL coefficient"),
        ({"n_epochs": 2}, ValueError, "pass num_iterations=2 instead of n_epochs=2"),
        ({"clip_range": 0.3}, ValueError, "pass epsilon=0.3 instead of clip_range=0.3"),
        ({"num_generation": 4}, TypeError, "Did you mean 'num_generations'"),
    ],
)
def test_bad_settings(kwargs: dict, error: type, message: str) -> None:
    kwargs.setdefault("num_generations", 4)
    with pytest.raises(error, match=message):
        GRPO("LMPolicy", make_env(8), verbose=0, **kwargs)


def test_trl_style_settings_port() -> None:
    config = GRPOConfig(scale_rewards=False, epsilon_high=0.28, beta=0.04)  # type: ignore[arg-type]
    assert config.scale_rewards == "none" and config.clip_high == 0.28 and config.kl_coef == 0.0
    assert GRPOConfig(scale_rewards=True).scale_rewards == "group"  # type: ignore[arg-type]
    assert GRPOConfig().clip_high == 0.2 and GRPOConfig().loss_type == "dapo"  # TRL's defaults
