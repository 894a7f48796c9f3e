"""Faults around the models: out of memory, tokenizers without a pad token, padded vocabularies, reward tensors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from agents import REINFORCE
from tests.agents.test_padded_vocab_agents import record_actions
from tests.agents.test_ppo import PROMPTS, make_env
from tests.conftest import build_char_tokenizer, build_tiny_lm, pad_vocabulary
from textrl_env import TextGenerationVectorEnv


def out_of_memory(*args: Any, **kwargs: Any) -> Any:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_in_the_update_names_minibatch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = REINFORCE("LMPolicy", make_env(num_envs=4), seed=0, verbose=0, minibatch_size=4)
    monkeypatch.setattr(agent, "evaluate_sequence", out_of_memory)
    with pytest.raises(
        torch.OutOfMemoryError, match=r"during the update .*lower minibatch_size \(now 4 .*minibatch_size=2\)"
    ):
        agent.learn(16)


def test_out_of_memory_in_the_rollout_names_the_rows_and_max_new_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = REINFORCE("LMPolicy", make_env(num_envs=4), seed=0, verbose=0)
    monkeypatch.setattr(agent.env, "step", out_of_memory)
    with pytest.raises(
        torch.OutOfMemoryError, match=r"during the rollout \(4 env rows\); lower .*max_new_tokens"
    ):
        agent.learn(16)


def test_a_tokenizer_without_a_pad_token_is_refused_with_the_fix() -> None:
    tokenizer = build_char_tokenizer()
    tokenizer.pad_token = None
    with pytest.raises(
        ValueError, match=r"has no pad token .*add_special_tokens\(\{'pad_token': '<pad>'\}\)"
    ):
        TextGenerationVectorEnv(
            build_tiny_lm(), tokenizer, prompts=PROMPTS, reward_model=lambda p, c: [0.0] * len(c)
        )


def test_a_model_with_a_padded_vocabulary_trains_and_never_emits_a_padding_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Padded embeddings (vocab rounded up past the tokenizer, as Qwen's): the extra ids' logits are dropped.

    The 13 extra ids get a logit of ~1000, so any sampler or log-prob that kept them would emit
    nothing else (and report log-probs near -1000). Fewer logits than tokens is still refused.
    """
    tokenizer = build_char_tokenizer()
    model = pad_vocabulary(build_tiny_lm(vocab_size=len(tokenizer)))  # 59 logits > len(tokenizer) == 46
    env = TextGenerationVectorEnv(
        model,
        tokenizer,
        prompts=PROMPTS,
        reward_model=lambda p, c: [0.0] * len(c),
        num_envs=4,
        max_new_tokens=4,
    )
    assert env.single_action_space.n == len(tokenizer)
    agent = REINFORCE("LMPolicy", env, seed=0, verbose=0)
    taken = record_actions(env, monkeypatch)
    agent.learn(64)
    assert len(taken) >= 8 and all((actions < len(tokenizer)).all() for actions in taken)
    with pytest.raises(
        ValueError, match=r"emits 40 logits but the tokenizer has 46 tokens.*resize_token_embeddings"
    ):
        TextGenerationVectorEnv(
            build_tiny_lm(vocab_size=40), tokenizer, prompts=PROMPTS, reward_model=lambda p, c: [0.0] * len(c)
        )


def test_a_reward_tensor_of_another_dtype_with_grad_is_moved_to_the_env() -> None:
    """A reward model that returns its own tensors (bf16, with grad, on its device) is detached, cast and moved."""
    weight = torch.ones((), requires_grad=True)

    def tensor_reward(prompts: list[str], completions: list[str]) -> torch.Tensor:
        return (weight * torch.arange(len(completions), dtype=torch.float32)).to(torch.bfloat16)

    tokenizer = build_char_tokenizer()
    env = TextGenerationVectorEnv(
        build_tiny_lm(), tokenizer, prompts=PROMPTS, reward_model=tensor_reward, num_envs=3, max_new_tokens=1
    )
    env.reset(seed=0)
    _, rewards, *_, info = env.step(torch.full((3,), 5))
    assert info["score"].dtype == torch.float32 and info["score"].device == env.device
    assert not info["score"].requires_grad
    assert info["score"].tolist() == [0.0, 1.0, 2.0]
