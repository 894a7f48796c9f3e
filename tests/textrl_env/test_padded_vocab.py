"""A model whose vocabulary is padded past its tokenizer's: the extra ids are dropped everywhere.

The padded models here (``pad_vocabulary``) give their 13 extra ids a logit of ~1000, so any path
that forgot to drop them would sample nothing else and report log-probs near -1000.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from tests.conftest import EOS, build_char_tokenizer, build_tiny_lm, pad_vocabulary
from tests.textrl_env.test_text_env import PROMPTS, length_reward, perturbed
from tests.textrl_env.test_vector_env import build_tiny_llama
from textrl_env import TextGenerationEnv, TextGenerationVectorEnv
from textrl_env.logprobs import real_vocab_logits, sequence_logprobs, token_logprobs

N_TOKENS = len(build_char_tokenizer())  # 46
BUILDERS = [build_tiny_lm, build_tiny_llama]  # tied (GPT-2) and untied (Llama) output embeddings


def vector_env(model: torch.nn.Module, ref: torch.nn.Module, **kwargs) -> TextGenerationVectorEnv:  # noqa: ANN003
    kwargs = {"num_envs": 4, "max_new_tokens": 5, "kl_coef": 0.1, "temperature": 0.7, **kwargs}
    return TextGenerationVectorEnv(
        model, build_char_tokenizer(), prompts=PROMPTS, reward_model=length_reward, ref_model=ref, **kwargs
    )


def test_the_padding_would_dominate_if_it_were_not_dropped() -> None:
    """The premise of every test below: over all logits, the extra ids take all the probability."""
    padded = pad_vocabulary(build_tiny_lm())
    logits = padded(torch.tensor([[3, 4, 5]])).logits[0, -1]  # (59,)
    assert logits.shape == (N_TOKENS + 13,)
    assert torch.softmax(logits, -1)[N_TOKENS:].sum() > 0.999


def test_real_vocab_logits_is_a_view_of_the_first_ids() -> None:
    logits = torch.randn(2, 3, 10)
    cut = real_vocab_logits(logits, 7)
    assert cut.shape == (2, 3, 7) and cut.data_ptr() == logits.data_ptr()  # a view, no copy
    torch.testing.assert_close(cut, logits[..., :7])
    assert real_vocab_logits(logits, None) is logits
    assert real_vocab_logits(logits, 10) is logits
    with pytest.raises(
        ValueError, match=r"10 columns but the vocabulary has 12 tokens.*resize_token_embeddings\(12\)"
    ):
        real_vocab_logits(logits, 12)


@pytest.mark.parametrize("build", BUILDERS)
def test_the_action_space_is_the_tokenizers_and_fewer_logits_are_refused(
    build: Callable[..., torch.nn.Module],
) -> None:
    padded = pad_vocabulary(build())
    env = TextGenerationEnv(padded, build_char_tokenizer(), prompts=PROMPTS, reward_model=length_reward)
    assert env.action_space.n == N_TOKENS == env.vocab_size
    assert env.observation_space["input_ids"].high.max() == N_TOKENS - 1
    with pytest.raises(ValueError, match=r"action 50 is not a token id .*0 <= id < 46"):
        env.reset(seed=0)
        env.step(50)  # a padding id is no action
    envs = vector_env(padded, pad_vocabulary(build()))
    assert envs.single_action_space.n == N_TOKENS
    with pytest.raises(
        ValueError, match=r"emits 40 logits but the tokenizer has 46 tokens.*resize_token_embeddings"
    ):
        TextGenerationVectorEnv(
            build(vocab_size=40), build_char_tokenizer(), prompts=PROMPTS, reward_model=length_reward
        )


@pytest.mark.parametrize("build", BUILDERS)
def test_vector_env_log_probs_equal_the_unpadded_models(build: Callable[..., torch.nn.Module]) -> None:
    """Same actions, same weights on the real ids: the same next-token logits, log-probs, KL and rewards,
    so every distribution is normalised over the tokenizer's ids only."""
    plain, plain_ref = build(), perturbed(build())
    padded_env = vector_env(pad_vocabulary(plain), pad_vocabulary(plain_ref))
    plain_env = vector_env(plain, plain_ref)
    padded_env.reset(seed=3)
    plain_env.reset(seed=3)
    rng = np.random.default_rng(0)
    ended = 0
    for step in range(12):
        logits = padded_env.next_token_logits
        assert logits.shape == (4, N_TOKENS)
        torch.testing.assert_close(logits, plain_env.next_token_logits, msg=f"logits at step {step}")
        actions = torch.as_tensor(rng.integers(3, N_TOKENS, size=4))
        actions[torch.as_tensor(rng.random(4) < 0.2)] = EOS
        _, r1, *_, i1 = padded_env.step(actions)
        _, r2, *_, i2 = plain_env.step(actions)
        torch.testing.assert_close(r1, r2, msg=f"rewards at step {step}")
        if "_score" in i1:
            ended += int(i1["_score"].sum())
            for key in ("logprobs", "ref_logprobs", "kl"):
                torch.testing.assert_close(i1[key], i2[key], msg=f"{key} at step {step}")
            rows = i1["_score"]
            real = i1["logprobs"][rows][i1["response_mask"][rows].bool()]
            assert (real > -50).all()  # over all logits they would be near -1000
    assert ended > 0


@pytest.mark.parametrize("build", BUILDERS)
def test_single_env_log_probs_equal_the_unpadded_models(build: Callable[..., torch.nn.Module]) -> None:
    plain, plain_ref = build(), perturbed(build())
    envs = [
        TextGenerationEnv(
            model,
            build_char_tokenizer(),
            prompts=PROMPTS,
            reward_model=length_reward,
            ref_model=ref,
            max_new_tokens=4,
            temperature=0.7,
        )  # fmt: skip
        for model, ref in ((pad_vocabulary(plain), pad_vocabulary(plain_ref)), (plain, plain_ref))
    ]
    infos = []
    for env in envs:
        env.reset(seed=1)
        for token in (5, 9, 12, 20):
            *_, info = env.step(token)
        infos.append(info)
    for key in ("logprobs", "ref_logprobs", "kl"):
        np.testing.assert_allclose(infos[0][key], infos[1][key], rtol=1e-5, atol=1e-5, err_msg=key)
    assert (infos[0]["logprobs"] > -50).all()


@pytest.mark.parametrize("build", BUILDERS)
def test_teacher_forced_log_probs_agree_with_the_step_log_probs(
    build: Callable[..., torch.nn.Module],
) -> None:
    """The update's teacher-forced pass and the env's KV-cached steps measure the same distribution."""
    padded = pad_vocabulary(build())
    env = vector_env(padded, pad_vocabulary(build()), max_new_tokens=6)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):  # sampled from the env's own (real-vocabulary) logits, no EOS: every row ends together
        probs = torch.softmax(env.next_token_logits / env.temperature, -1)
        probs[:, EOS] = 0
        actions = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        obs, *_, info = env.step(actions)
    assert "_score" in info and info["_score"].all()
    ids, mask, p = obs["input_ids"], obs["attention_mask"], env.prompt_length
    assert (ids[:, p:][mask[:, p:].bool()] < N_TOKENS).all()
    with torch.no_grad():
        forced = sequence_logprobs(padded, ids, mask, p, env.temperature, vocab_size=N_TOKENS)
        over_all = sequence_logprobs(padded, ids, mask, p, env.temperature)
    torch.testing.assert_close(forced, info["logprobs"], rtol=1e-4, atol=1e-4)
    assert (over_all[mask[:, p:].bool()] < -100).all()  # what not dropping the padding would give


def test_handed_policy_logits_may_carry_the_padding() -> None:
    """A custom policy on a padded model may hand all its logits; the env drops the extra columns."""
    plain = build_tiny_lm()
    env = vector_env(pad_vocabulary(plain), pad_vocabulary(plain), logits_source="policy", num_envs=2)
    env.reset(seed=0)
    handed = torch.randn(2, N_TOKENS + 13)
    handed[:, N_TOKENS:] = 1e3
    env.set_policy_logits(handed)
    actions = torch.tensor([7, 8])
    env.step(actions)
    expected = token_logprobs(handed[:, :N_TOKENS], actions, env.temperature)
    torch.testing.assert_close(env._logprobs[:, 0], expected)
    with pytest.raises(ValueError, match=r"logits must have shape \(2, 46\).*got \(2, 40\)"):
        env.set_policy_logits(torch.randn(2, 40))
