"""RLOO: its update against a hand-built loss, its batch layout, and clear errors for bad settings."""

from __future__ import annotations

import pytest
import torch

from agents import RLOO, LMPolicy
from agents.collect import Episodes, collect_episodes
from agents.losses import masked_mean
from agents.rewards import SequenceRewards
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv

PROMPTS = ["the movie", "i liked", "bb"]


def a_fraction(prompts: list[str], completions: list[str]) -> list[float]:
    """An easy reward: the share of 'a' characters in the completion."""
    return [c.count("a") / max(len(c), 1) for c in completions]


def make_env(num_envs: int = 8, **kwargs) -> TextGenerationVectorEnv:
    kwargs.setdefault("max_new_tokens", 6)
    return TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, a_fraction, num_envs=num_envs,
                                   **kwargs)  # fmt: skip


def test_rollout_groups_k_samples_per_prompt() -> None:
    agent = RLOO("LMPolicy", make_env(8), k=4, seed=0, verbose=0)
    prompts = agent._rollout_prompts()
    assert len(prompts) == 8
    assert prompts[:4] == [prompts[0]] * 4 and prompts[4:] == [prompts[4]] * 4


def test_update_gradient_matches_hand_built_loss() -> None:
    agent = RLOO("LMPolicy", make_env(4), k=4, seed=0, verbose=0, max_grad_norm=0.0)
    episodes = collect_episodes(agent.env, ["the movie"] * 4, None, agent.generator)
    assert isinstance(episodes, Episodes)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5])
    expected_adv = torch.tensor([1.0 - 1 / 3, 0.0 - 2 / 3, 0.5 - 0.5, 0.5 - 0.5])  # r_i - mean of the others

    ids = torch.cat([episodes.prompt_ids, episodes.response_ids], 1)
    mask = torch.cat([episodes.prompt_mask, episodes.response_mask], 1)
    start = episodes.prompt_ids.shape[1]
    agent.policy.zero_grad()
    logprobs = agent.policy.sequence_logprobs(ids, mask, start)
    manual = -masked_mean(expected_adv[:, None] * logprobs, episodes.response_mask)
    manual.backward()
    expected_grads = [p.grad.clone() for p in agent.policy.parameters()]

    captured = []

    def capture(loss: torch.Tensor) -> torch.Tensor:
        agent.optimizer.zero_grad()
        loss.backward()
        captured.extend(p.grad.clone() for p in agent.policy.parameters())
        return torch.tensor(0.0)

    agent.step_optimizer = capture  # type: ignore[method-assign]
    parts = SequenceRewards(
        score=rewards, kl=torch.zeros_like(episodes.kl), kl_coef=0.0, scale=1.0, total=rewards
    )
    stats = agent._update(episodes, parts)
    assert len(captured) == len(expected_grads)
    for got, want in zip(captured, expected_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)
    assert float(stats["train/clip_fraction"]) == 0.0  # first pass: ratio is exactly 1


def test_env_logprobs_are_the_policy_logprobs() -> None:
    """The env's info["logprobs"] (KV-cached) equal the policy's teacher-forced log-probs: ratio 1."""
    agent = RLOO("LMPolicy", make_env(4, temperature=0.8), k=2, seed=0, verbose=0)
    episodes = collect_episodes(agent.env, ["i liked"] * 4, None, agent.generator)
    ids = torch.cat([episodes.prompt_ids, episodes.response_ids], 1)
    mask = torch.cat([episodes.prompt_mask, episodes.response_mask], 1)
    with torch.no_grad():
        teacher = agent.policy.sequence_logprobs(ids, mask, episodes.prompt_ids.shape[1])
    torch.testing.assert_close(episodes.logprobs, teacher, atol=1e-5, rtol=1e-5)


def test_rloo_learns_an_easy_reward() -> None:
    agent = RLOO("LMPolicy", make_env(16, kl_coef=0.0), k=4, learning_rate=3e-3, seed=0, verbose=0)
    before = agent.evaluate(PROMPTS, n_samples=8).score_mean
    agent.learn(total_timesteps=16 * 6 * 80)
    after = agent.evaluate(PROMPTS, n_samples=8).score_mean
    assert after > before + 0.2, (before, after)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k": 1}, ValueError, "k must be an int >= 2"),
        ({"k": 3}, ValueError, "num_envs=8 is not a multiple of k=3"),
        ({"k": 4, "minibatch_size": 3}, ValueError, "does not divide into minibatches of 3"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate must be a finite number > 0"),
        ({"n_epoch": 2}, TypeError, "unknown setting 'n_epoch'. Did you mean 'n_epochs'"),
    ],
)
def test_bad_settings(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RLOO("LMPolicy", make_env(8), verbose=0, **kwargs)


def test_unknown_policy_alias_suggests_the_right_one() -> None:
    with pytest.raises(ValueError, match="Did you mean 'LMPolicy'"):
        RLOO("LMPolcy", make_env(8), verbose=0)


def test_policy_with_another_vocabulary_is_refused() -> None:
    class WideVocabPolicy(LMPolicy):
        @property
        def vocab_size(self) -> int:
            return 100

    with pytest.raises(ValueError, match="100"):
        RLOO(WideVocabPolicy, make_env(8), verbose=0)


def test_a_single_env_is_refused_with_the_fix() -> None:
    from textrl_env import TextGenerationEnv

    single = TextGenerationEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, a_fraction)
    with pytest.raises(TypeError, match="make_vec"):
        RLOO("LMPolicy", single, verbose=0)
