"""LoRA policies train the adapter only, and their KL reference is the adapter switched off."""

from __future__ import annotations

import pytest
import torch

from agents import RLOO
from agents.lora import AdapterOffReference
from tests.agents.test_rloo import PROMPTS, a_fraction
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv
from textrl_env.logprobs import sequence_logprobs

pytest.importorskip("peft")


def test_reference_is_the_adapter_switched_off_and_learning_moves_only_the_adapter() -> None:
    base_copy = build_tiny_lm()  # the same seeded weights the env's model starts from
    env = TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, a_fraction, num_envs=8,
                                  max_new_tokens=6, kl_coef=0.01)  # fmt: skip
    lora = {"r": 4, "lora_alpha": 16, "target_modules": ["c_attn"], "fan_in_fan_out": True}
    agent = RLOO(
        "LMPolicy", env, k=4, learning_rate=1e-2, seed=0, verbose=0, policy_kwargs={"lora_config": lora}
    )
    assert isinstance(env.ref_model, AdapterOffReference)
    assert list(env.ref_model.parameters()) == []  # no second copy of the weights
    trainable = {n for n, p in agent.policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora" in n for n in trainable)
    agent.learn(8 * 6 * 15)

    episodes = agent.evaluate(PROMPTS, n_samples=2)
    assert episodes.kl.abs().sum() > 0  # the adapter moved the policy away from the reference
    obs, _ = env.reset(options={"prompt": ["the movie"] * 8})
    ids, mask = obs["input_ids"], obs["attention_mask"]
    ids[:, env.prompt_length], mask[:, env.prompt_length] = 5, 1  # one response token to score
    start = env.prompt_length
    with torch.no_grad():
        ref = sequence_logprobs(env.ref_model, ids, mask, start)
        expected = sequence_logprobs(base_copy, ids, mask, start)
        policy = sequence_logprobs(env.model, ids, mask, start)
    torch.testing.assert_close(ref, expected)
    assert not torch.allclose(policy, expected)
    assert any(p.requires_grad for p in agent.policy.parameters())  # the reference did not freeze the adapter
