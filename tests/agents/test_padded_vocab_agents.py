"""Agents on a model whose vocabulary is padded past its tokenizer's (as Qwen's and many Llama checkpoints).

``pad_vocabulary`` gives the 13 extra ids a logit of ~1000: any sampler, log-prob or entropy that
kept them would sample nothing else, report log-probs near -1000 and an entropy near 0.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import PPO, REINFORCE, RLOO, LMActorCriticPolicy, LMPolicy
from agents.attach import attach_policy
from agents.collect import collect_episodes
from agents.policies.base import Obs, obs_to_tensors, right_align
from agents.policies.lm import _run_lm
from agents.sb3 import TextRLSB3Policy
from agents.sft import Demonstration, SFTConfig, collate, sft_loss, tokenize_demonstrations, train_sft
from tests.conftest import build_char_tokenizer, build_tiny_lm, pad_vocabulary
from tests.textrl_env.test_text_env import perturbed
from textrl_env import TextGenerationVectorEnv

PROMPTS = ["the movie", "i liked", "bb"]
N_TOKENS = len(build_char_tokenizer())  # 46; the padded models emit 59 logits


def a_fraction(prompts: list[str], completions: list[str]) -> list[float]:
    return [c.count("a") / max(len(c), 1) for c in completions]


def padded_env(num_envs: int = 4, **kwargs: Any) -> TextGenerationVectorEnv:
    kwargs.setdefault("max_new_tokens", 5)
    kwargs.setdefault("kl_coef", 0.1)
    model = build_tiny_lm()
    return TextGenerationVectorEnv(
        pad_vocabulary(model), build_char_tokenizer(), PROMPTS, a_fraction, num_envs=num_envs,
        ref_model=pad_vocabulary(perturbed(model)), **kwargs,
    )  # fmt: skip


def record_actions(env: TextGenerationVectorEnv, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    taken: list[torch.Tensor] = []
    step = env.step

    def recording_step(actions: torch.Tensor) -> Any:
        taken.append(torch.as_tensor(actions))
        return step(actions)

    monkeypatch.setattr(env, "step", recording_step)
    return taken


@pytest.mark.parametrize("agent_class", [RLOO, REINFORCE])
def test_learn_never_samples_a_padding_id(agent_class: type, monkeypatch: pytest.MonkeyPatch) -> None:
    env = padded_env(num_envs=4)
    kwargs = {"k": 2} if agent_class is RLOO else {}
    agent = agent_class("LMPolicy", env, seed=0, verbose=0, learning_rate=1e-3, **kwargs)
    assert agent.policy.vocab_size == N_TOKENS
    taken = record_actions(env, monkeypatch)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(4 * 5 * 6)
    assert len(taken) >= 12 and all((actions < N_TOKENS).all() for actions in taken)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters(), strict=True))


def test_teacher_forced_log_probs_agree_with_the_envs_after_training() -> None:
    """After updates, the update's teacher-forced log-probs still equal what the env measured stepping."""
    env = padded_env(num_envs=4, temperature=0.8)
    agent = RLOO("LMPolicy", env, k=2, seed=0, verbose=0, learning_rate=1e-2)
    agent.learn(4 * 5 * 2)
    episodes = collect_episodes(env, PROMPTS[:2] * 2, None, torch.Generator().manual_seed(1))
    assert episodes is not None
    assert (episodes.response_ids < N_TOKENS).all()
    with torch.no_grad():
        _, logprobs, entropy = agent.policy.evaluate_sequence(
            episodes.input_ids, episodes.attention_mask, episodes.response_start
        )
    torch.testing.assert_close(logprobs, episodes.logprobs, rtol=1e-4, atol=1e-4)
    mask = episodes.response_mask.bool()
    assert (entropy[mask] > 1.0).all()  # over all logits the padding would leave almost none


@pytest.mark.parametrize("value_head", ["shared", "separate"])
def test_actor_critic_entropy_and_log_probs_are_over_the_real_vocabulary(value_head: str) -> None:
    """PPO's evaluate_sequence / evaluate_actions on the padded model equal the unpadded model's."""
    plain = build_tiny_lm()
    policies = []
    for model in (pad_vocabulary(plain), plain):
        torch.manual_seed(0)  # the same value head on both
        policies.append(
            LMActorCriticPolicy(
                model, build_char_tokenizer(), 0.7, value_head=value_head, value_head_init_std=0.1
            )
        )
    ids = torch.tensor([[0, 5, 6, 7, 8, 9], [4, 5, 6, 7, 1, 0]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    padded_out, plain_out = (p.evaluate_sequence(ids, mask, 3) for p in policies)
    for got, expected, name in zip(padded_out, plain_out, ("values", "logprobs", "entropy"), strict=True):
        torch.testing.assert_close(got, expected, msg=name)
    obs = {"input_ids": ids[:, :4], "attention_mask": mask[:, :4]}
    actions = torch.tensor([8, 1])
    for got, expected in zip(*(p.evaluate_actions(obs, actions) for p in policies), strict=True):
        torch.testing.assert_close(got, expected)
    assert policies[0](obs).shape == (2, N_TOKENS)


def test_ppo_learns_on_a_padded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    env = padded_env(num_envs=4)
    agent = PPO("LMActorCriticPolicy", env, seed=0, verbose=0, learning_rate=1e-3)
    taken = record_actions(env, monkeypatch)
    agent.learn(4 * 5 * 2)
    assert taken and all((actions < N_TOKENS).all() for actions in taken)


class FullLogitsPolicy(LMPolicy):
    """A custom policy whose forward hands back every logit, padding included (so the env cannot sample for it)."""

    def forward(self, obs: Obs) -> torch.Tensor:
        ids, mask, _ = obs_to_tensors(obs, self.device)
        return _run_lm(self.model, *right_align(ids, mask), keep=1, hidden=False).logits[:, -1]  # (B, 59)


def test_a_policy_handing_padded_logits_never_samples_a_padding_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """With logits_source="policy", the agent drops the extra columns before sampling and handing them over."""
    env = padded_env(num_envs=4)
    agent = REINFORCE(FullLogitsPolicy, env, seed=0, verbose=0)
    assert env.logits_source == "policy"
    assert agent.policy({"input_ids": env._ids, "attention_mask": env._mask}).shape[-1] == N_TOKENS + 13
    taken = record_actions(env, monkeypatch)
    agent.learn(4 * 5 * 2)
    assert taken and all((actions < N_TOKENS).all() for actions in taken)


def test_lm_policy_vocab_size() -> None:
    padded = pad_vocabulary(build_tiny_lm())
    assert LMPolicy(padded).vocab_size == N_TOKENS + 13  # no tokenizer: every logit
    assert LMPolicy(padded, build_char_tokenizer()).vocab_size == N_TOKENS
    policy = LMPolicy(padded, vocab_size=N_TOKENS)
    obs = {
        "input_ids": torch.tensor([[5, 6, 7]] * 300),
        "attention_mask": torch.ones(300, 3, dtype=torch.long),
    }
    assert policy(obs).shape == (300, N_TOKENS)
    assert (policy.act(obs, generator=torch.Generator().manual_seed(0)) < N_TOKENS).all()
    with pytest.raises(ValueError, match=r"vocab_size must be an int in \[1, 59\].*got 60"):
        LMPolicy(padded, vocab_size=60)
    with pytest.raises(ValueError, match=r"emits 40 logits but the tokenizer has 46 tokens"):
        LMPolicy(build_tiny_lm(vocab_size=40), build_char_tokenizer())
    env = padded_env()
    with pytest.raises(ValueError, match=r"emits 59 logits .*Discrete\(46\).*tokenizer=env.tokenizer"):
        attach_policy(LMPolicy(env.model), env)  # no tokenizer: the policy cannot know the real size
    assert attach_policy(LMPolicy(env.model, vocab_size=N_TOKENS), env)  # and the env samples for it


def test_sb3_policy_acts_over_the_real_vocabulary() -> None:
    plain = build_tiny_lm()
    policies = []
    for model in (pad_vocabulary(plain), plain):
        env = gym.make(
            "textrl/TextGeneration-v0", model=model, tokenizer=build_char_tokenizer(), prompts=PROMPTS,
            reward_model=a_fraction, max_new_tokens=4,
        )  # fmt: skip
        assert env.action_space.n == N_TOKENS
        obs, _ = env.reset(seed=0)
        policies.append(TextRLSB3Policy(env.observation_space, env.action_space, lambda _: 1e-3))
    batch = {key: torch.as_tensor(np.stack([value] * 200)) for key, value in obs.items()}
    padded_dist, plain_dist = (p.get_distribution(batch) for p in policies)
    torch.testing.assert_close(padded_dist.distribution.probs, plain_dist.distribution.probs)
    assert (padded_dist.get_actions() < N_TOKENS).all()


def test_sft_loss_is_normalised_over_the_real_vocabulary() -> None:
    tokenizer, plain = build_char_tokenizer(), build_tiny_lm()
    padded = pad_vocabulary(plain)
    demos = [Demonstration("2+2=", "4"), Demonstration("hi ", "there")]
    ids, mask, start = collate(tokenize_demonstrations(tokenizer, demos), tokenizer.pad_token_id)
    with torch.no_grad():
        expected = sft_loss(plain, ids, mask, start)
        torch.testing.assert_close(sft_loss(padded, ids, mask, start, vocab_size=N_TOKENS), expected)
        assert sft_loss(padded, ids, mask, start) > 100  # the padding's share, had it been kept
    config = SFTConfig(num_epochs=1, batch_size=2)
    first = train_sft(padded, tokenizer, demos, config, progress=False).losses[0]  # the loss before any step
    assert first == pytest.approx(float(expected), rel=1e-5)  # train_sft normalises over the real ids too
