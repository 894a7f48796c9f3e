"""TextGenerationEnv: episode semantics, the reward identity, and clear errors for bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EOS, build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationEnv

PROMPTS = ["the movie was", "i liked", "1+2="]


def length_reward(prompts: list[str], completions: list[str]) -> list[float]:
    return [len(c) / 10 for c in completions]


def perturbed(model: torch.nn.Module, scale: float = 0.3, seed: int = 1) -> torch.nn.Module:
    """A different network of the same shape, so KL terms are not zero."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return other


def make_env(**kwargs) -> TextGenerationEnv:
    model = kwargs.pop("model", None) or build_tiny_lm()
    kwargs.setdefault("tokenizer", build_char_tokenizer())
    kwargs.setdefault("prompts", PROMPTS)
    kwargs.setdefault("reward_model", length_reward)
    kwargs.setdefault("max_new_tokens", 6)
    return TextGenerationEnv(model, **kwargs)


def run_episode(env: TextGenerationEnv, actions: list[int]) -> tuple[float, dict, bool, bool, int]:
    total, steps = 0.0, 0
    for a in actions:
        _, r, terminated, truncated, info = env.step(a)
        total, steps = total + r, steps + 1
        if terminated or truncated:
            return total, info, terminated, truncated, steps
    raise AssertionError("episode did not end within the given actions")


def test_episode_layout_and_ends() -> None:
    env = make_env()
    obs, info = env.reset(seed=0, options={"prompt": "i liked"})
    p, t = env.prompt_length, env.max_new_tokens
    assert obs["input_ids"].shape == (p + t,) and obs["input_ids"].dtype == np.int64
    assert obs["attention_mask"][:p].sum() == len("i liked") and obs["attention_mask"][p:].sum() == 0
    assert env.observation_space.contains(obs)
    obs, r, terminated, truncated, info = env.step(5)
    assert (r, terminated, truncated, info) == (0.0, False, False, {})
    assert obs["input_ids"][p] == 5 and obs["attention_mask"][p] == 1
    obs, r, terminated, truncated, info = env.step(EOS)
    assert terminated and not truncated
    assert info["response_length"] == 2 and info["kl"].shape == (t,)
    env.reset(seed=0)
    _, _, terminated, truncated, steps = run_episode(env, [5] * t)
    assert truncated and not terminated and steps == t


def test_reset_is_seeded() -> None:
    env_a, env_b = make_env(), make_env()
    prompts_a = [env_a.reset(seed=s)[1]["prompt"] for s in range(10)]
    prompts_b = [env_b.reset(seed=s)[1]["prompt"] for s in range(10)]
    assert prompts_a == prompts_b and len(set(prompts_a)) > 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(st.integers(3, 45), min_size=1, max_size=6),
    end_with_eos=st.booleans(),
    kl_coef=st.floats(0.0, 2.0),
    estimator=st.sampled_from(["k1", "k2", "k3"]),
    prompt=st.text(alphabet="abcdefgh +=123", min_size=1, max_size=12),
)
def test_return_is_score_minus_kl(actions, end_with_eos, kl_coef, estimator, prompt) -> None:
    policy = build_tiny_lm()
    env = make_env(model=policy, ref_model=perturbed(policy), kl_coef=kl_coef, kl_estimator=estimator,
                   max_prompt_tokens=13)  # fmt: skip
    env.reset(seed=0, options={"prompt": prompt})
    actions = actions[:5] + [EOS] if end_with_eos else actions + [7] * 6
    total, info, *_ = run_episode(env, actions)
    expected = info["score"] - kl_coef * float(np.sum(info["kl"]))
    assert total == pytest.approx(expected, rel=1e-5, abs=1e-5)
    if kl_coef == 0.0:
        assert total == pytest.approx(info["score"], abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(
    actions=st.lists(st.integers(3, 45), min_size=6, max_size=6),
    estimator=st.sampled_from(["k1", "k2", "k3"]),
)
def test_kl_is_zero_when_policy_is_reference(actions, estimator) -> None:
    env = make_env(kl_coef=1.0, kl_estimator=estimator)  # reference = frozen copy of the policy
    env.reset(seed=1)
    total, info, *_ = run_episode(env, actions)
    assert np.all(info["kl"] == 0.0)
    assert total == pytest.approx(info["score"], abs=1e-6)
    assert np.allclose(info["logprobs"], info["ref_logprobs"])


def test_policy_is_the_given_module_and_reference_is_frozen() -> None:
    policy = build_tiny_lm()
    env = make_env(model=policy)
    assert env.model is policy
    assert env.ref_model is not policy
    assert not any(p.requires_grad for p in env.ref_model.parameters())


def test_logprobs_respect_temperature() -> None:
    policy = build_tiny_lm()
    hot, cold = make_env(model=policy, temperature=2.0), make_env(model=policy, temperature=0.5)
    infos = []
    for env in (hot, cold):
        env.reset(seed=0, options={"prompt": "i liked"})
        infos.append(run_episode(env, [5, 6, EOS])[1])
    assert not np.allclose(infos[0]["logprobs"][:3], infos[1]["logprobs"][:3])


def test_step_before_reset_and_after_end() -> None:
    env = make_env()
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(5)
    env.reset(seed=0)
    env.step(EOS)
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(5)


@pytest.mark.parametrize("action", [-1, 46, 10_000])
def test_out_of_range_action(action: int) -> None:
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action {action} is not a token id.*0 <= id < 46"):
        env.step(action)


def test_prompt_longer_than_window_or_context() -> None:
    env = make_env()
    with pytest.raises(ValueError, match="longer than the env's prompt window"):
        env.reset(options={"prompt": "a much longer prompt than any given one"})
    with pytest.raises(ValueError, match="exceeds the model's context of 64"):
        make_env(prompts=["x" * 60], max_new_tokens=8)


def test_tokenizer_without_pad_token() -> None:
    tokenizer = build_char_tokenizer()
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match=r"no pad token.*add_special_tokens\(\{'pad_token'"):
        make_env(tokenizer=tokenizer)


def test_vocab_mismatch() -> None:
    """Fewer logits than tokens is refused; more is a padded vocabulary (tests/textrl_env/test_padded_vocab.py)."""
    with pytest.raises(
        ValueError, match=r"emits 40 logits but the tokenizer has 46 tokens.*resize_token_embeddings"
    ):
        make_env(model=build_tiny_lm(vocab_size=40))
    assert make_env(model=build_tiny_lm(vocab_size=60)).action_space.n == 46


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kl_coef": -0.1}, "kl_coef must be a finite number >= 0"),
        ({"kl_estimator": "k4"}, "kl_estimator must be one of"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an int >= 1"),
        ({"temperature": 0.0}, "temperature must be a finite number > 0"),
        ({"prompts": []}, "prompts must be a non-empty list"),
        ({"reward_model": "vader"}, "reward_model must be callable"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make_env(**kwargs)


def test_non_finite_reward_names_the_reward() -> None:
    def broken_reward(prompts, completions):
        return [float("nan")] * len(completions)

    env = make_env(reward_model=broken_reward)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="broken_reward.*NaN"):
        run_episode(env, [5, EOS])


def test_loads_from_a_local_path(tmp_path) -> None:
    policy, tokenizer = build_tiny_lm(), build_char_tokenizer()
    policy.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    env = TextGenerationEnv(str(tmp_path), prompts=PROMPTS, reward_model=length_reward)
    assert env.action_space.n == len(tokenizer)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_render_ansi() -> None:
    env = make_env(render_mode="ansi")
    env.reset(seed=0, options={"prompt": "i liked"})
    env.step(build_char_tokenizer().convert_tokens_to_ids("a"))
    assert env.render() == "i likeda"
