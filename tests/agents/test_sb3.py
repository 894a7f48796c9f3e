"""Stable-Baselines3's own PPO on a textrl env through the TextRLSB3Policy adapter."""

from __future__ import annotations

import copy
import gc
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3 as sb3
import torch
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.evaluation import evaluate_policy

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from agents.sb3 import TextRLSB3Policy
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationEnv
from textrl_env.default_model import DEFAULT_MODEL_PATH
from textrl_env.logprobs import position_ids_from_mask
from textrl_env.space_registry import env_for_space, model_for_space

PROMPTS = ["hello", "the cat", "go"]


def vowel_fraction(prompts: list[str], completions: list[str]) -> list[float]:
    """An easy reward: the share of vowels in the completion (about 5/46 for a random char LM)."""
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]


def env_kwargs(**overrides: object) -> dict:
    kwargs = dict(
        model=build_tiny_lm(), tokenizer=build_char_tokenizer(), prompts=PROMPTS,
        reward_model=vowel_fraction, kl_coef=0.01, max_new_tokens=6,
    )  # fmt: skip
    return kwargs | overrides


def make_env(**overrides: object) -> gym.Env:
    """The generic id through gym.make, so Gymnasium's wrappers sit between SB3 and the env."""
    return gym.make("textrl/TextGeneration-v0", **env_kwargs(**overrides))


def make_ppo(env: gym.Env, **kwargs: object) -> sb3.PPO:
    settings = dict(
        n_steps=64, batch_size=32, n_epochs=2, learning_rate=1e-3, seed=0, device="cpu", verbose=0
    )
    return sb3.PPO(TextRLSB3Policy, env, **(settings | kwargs))


def next_token_logits(model: torch.nn.Module, obs: dict[str, np.ndarray]) -> torch.Tensor:
    """A plain full forward, read at the last real column: what the adapter must reproduce."""
    ids = torch.as_tensor(obs["input_ids"]).unsqueeze(0)
    mask = torch.as_tensor(obs["attention_mask"]).unsqueeze(0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    return logits[0, int(mask[0].nonzero().max())]  # (V,)


# ---------------------------------------------------------------------- training


def test_sb3_ppo_raises_the_mean_episode_reward() -> None:
    env = make_env()
    # Built before training and on the same module, so its frozen reference is the starting model too.
    eval_env = TextGenerationEnv(**env_kwargs(model=env.unwrapped.model))
    eval_env.reset(seed=123)
    ppo = make_ppo(env, n_steps=128, batch_size=64, n_epochs=4)
    assert ppo.policy.model is env.unwrapped.model  # found through the observation space
    start = copy.deepcopy(env.unwrapped.model.state_dict())

    before, _ = evaluate_policy(ppo, eval_env, n_eval_episodes=100, deterministic=False, warn=False)
    ppo.learn(total_timesteps=2048)
    after, _ = evaluate_policy(ppo, eval_env, n_eval_episodes=100, deterministic=False, warn=False)

    print(f"SB3 PPO mean episode reward: {before:.3f} -> {after:.3f}")
    assert after - before >= 0.3, (before, after)
    # SB3's optimizer moved the env's own model; the env's reference stayed where it started.
    moved = env.unwrapped.model.state_dict()
    assert any(not torch.equal(start[k], moved[k]) for k in start)
    ref = env.unwrapped.ref_model.state_dict()
    assert all(torch.equal(start[k], ref[k]) for k in start)


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_MODEL_PATH / "config.json").exists(), reason="default model not built")
def test_sb3_ppo_on_sentiment_v0_with_the_default_model() -> None:
    """The bare call on a registered id: the policy finds the embedded default model by itself."""
    env = gym.make("textrl/Sentiment-v0", max_new_tokens=8)
    eval_env = gym.make("textrl/Sentiment-v0", max_new_tokens=8, model=env.unwrapped.model,
                        tokenizer=env.unwrapped.tokenizer)  # fmt: skip
    eval_env.reset(seed=123)
    ppo = make_ppo(env, n_steps=256, batch_size=64, n_epochs=4, learning_rate=3e-4)
    assert ppo.policy.model is env.unwrapped.model

    before, _ = evaluate_policy(ppo, eval_env, n_eval_episodes=100, deterministic=False, warn=False)
    ppo.learn(total_timesteps=3072)
    after, _ = evaluate_policy(ppo, eval_env, n_eval_episodes=100, deterministic=False, warn=False)

    print(f"SB3 PPO on Sentiment-v0, mean episode reward (VADER - KL penalty): {before:.3f} -> {after:.3f}")
    # Seeds 0-2 gave +0.28 to +0.33; a mean over 100 episodes has a std of about 0.05.
    assert after - before >= 0.2, (before, after)


def test_optimizer_holds_the_lm_and_the_value_head() -> None:
    env = make_env()
    ppo = make_ppo(env)
    in_optimizer = {id(p) for group in ppo.policy.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in env.unwrapped.model.parameters())
    assert all(id(p) in in_optimizer for p in ppo.policy.value_head.parameters())
    assert all(id(p) not in in_optimizer for p in env.unwrapped.ref_model.parameters())


def test_sb3_check_env_passes() -> None:
    check_env(make_env(), warn=True)


# ---------------------------------------------------------------------- the policy's numbers


def test_predict_round_trip_matches_the_lm() -> None:
    env = make_env()
    ppo = make_ppo(env)
    model = env.unwrapped.model
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        action, state = ppo.predict(obs, deterministic=True)
        assert state is None and action.shape == () and np.issubdtype(action.dtype, np.integer)
        assert int(action) == int(next_token_logits(model, obs).argmax())
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    # A batch of observations gives a batch of actions.
    first, _ = env.reset(seed=1)
    batch = {key: np.stack([first[key], obs[key]]) for key in obs}
    actions, _ = ppo.predict(batch, deterministic=False)
    assert actions.shape == (2,) and ((actions >= 0) & (actions < env.action_space.n)).all()


def test_evaluate_actions_reproduces_the_envs_logprobs() -> None:
    """The env's info['logprobs'] (its KL input) are the adapter's log-probs: one model, one temperature."""
    env = make_env(temperature=0.7, max_new_tokens=8)
    ppo = make_ppo(env)
    assert ppo.policy.temperature == 0.7  # taken from the env
    observations, actions = [], []
    obs, _ = env.reset(seed=3)
    done = False
    while not done:
        action, _ = ppo.predict(obs)
        observations.append(obs)
        actions.append(int(action))
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    # SB3 may hand observations back as floats; the adapter turns them into token ids again.
    stacked = {
        key: torch.as_tensor(np.stack([o[key] for o in observations]), dtype=torch.float32) for key in obs
    }
    with torch.no_grad():
        values, log_prob, entropy = ppo.policy.evaluate_actions(
            stacked, torch.tensor(actions, dtype=torch.float32)
        )
    n = len(actions)
    assert values.shape == (n, 1) and log_prob.shape == (n,) and entropy.shape == (n,)
    torch.testing.assert_close(log_prob, torch.as_tensor(info["logprobs"][:n]), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(entropy).all() and (entropy > 0).all()


def test_dropout_stays_off_in_training_mode() -> None:
    env = make_env()  # GPT-2's config has dropout 0.1 everywhere
    ppo = make_ppo(env)
    ppo.policy.set_training_mode(True)
    assert ppo.policy.training and not ppo.policy.model.training
    obs, _ = env.reset(seed=0)
    tensor_obs = {key: torch.as_tensor(value).unsqueeze(0) for key, value in obs.items()}
    first = ppo.policy.get_distribution(tensor_obs).distribution.logits
    second = ppo.policy.get_distribution(tensor_obs).distribution.logits
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_a_full_response_has_value_zero() -> None:
    """The env always ends once every response slot is filled, so SB3's truncation bootstrap must add 0."""
    env = make_env()
    ppo = make_ppo(env, policy_kwargs={"value_head_init_std": 1.0})
    obs, _ = env.reset(seed=0)
    mid_episode = {key: torch.as_tensor(value).unsqueeze(0) for key, value in obs.items()}
    done = False
    while not done:  # the last token id is not EOS, so the episode runs to the length limit
        obs, _, terminated, truncated, _ = env.step(env.action_space.n - 1)  # never EOS
        done = terminated or truncated
    assert truncated and obs["attention_mask"][-1] == 1
    full = {key: torch.as_tensor(value).unsqueeze(0) for key, value in obs.items()}
    with torch.no_grad():
        assert ppo.policy.predict_values(full).item() == 0.0
        assert ppo.policy.predict_values(mid_episode).item() != 0.0


# ---------------------------------------------------------------------- finding the model, and bad input


def test_the_model_can_also_come_through_policy_kwargs() -> None:
    env = make_env()
    ppo = make_ppo(env, policy_kwargs={"model": env.unwrapped.model})
    assert ppo.policy.model is env.unwrapped.model


def test_clear_errors_when_the_model_cannot_be_found_or_is_wrong() -> None:
    env = make_env()
    other = make_env()
    copied_space = copy.deepcopy(env.observation_space)  # equal, but no env created it
    schedule = lambda _: 1e-3  # noqa: E731
    with pytest.raises(ValueError, match="policy_kwargs=\\{'model': env.unwrapped.model\\}"):
        TextRLSB3Policy(copied_space, env.action_space, schedule)
    with pytest.raises(ValueError, match="not the model of the env being trained"):
        make_ppo(env, policy_kwargs={"model": other.unwrapped.model})
    with pytest.raises(ValueError, match="differs from the env's temperature"):
        make_ppo(env, policy_kwargs={"temperature": 0.5})
    wrong_vocab = f"Discrete\\({env.action_space.n}\\)"
    with pytest.raises(ValueError, match=wrong_vocab), pytest.warns(UserWarning, match="no live textrl env"):
        # fewer logits than actions; more is a padded vocabulary (tests/agents/test_padded_vocab_agents.py)
        TextRLSB3Policy(copied_space, env.action_space, schedule, model=build_tiny_lm(vocab_size=40))
    with pytest.raises(TypeError, match="Dict\\(input_ids, attention_mask\\)"):
        TextRLSB3Policy(gym.spaces.Box(0, 1, (4,)), env.action_space, schedule)
    with pytest.raises(ValueError, match="gSDE"):
        make_ppo(env, use_sde=True)


def test_moving_the_policy_off_the_envs_device_is_refused() -> None:
    env = make_env()
    ppo = make_ppo(env)
    ppo.policy.to("cpu")  # the env's device: fine
    ppo.policy.to(torch.float32)
    with pytest.raises(ValueError, match="Pass device='cpu'"):
        ppo.policy.to("meta")
    assert next(env.unwrapped.model.parameters()).device.type == "cpu"


def test_save_and_load_into_another_env(tmp_path: Path) -> None:
    env = make_env()
    ppo = make_ppo(env)
    ppo.learn(total_timesteps=64)
    ppo.save(tmp_path / "ppo")
    trained = env.unwrapped.model.state_dict()

    fresh = make_env(model=build_tiny_lm(seed=1))
    with pytest.raises(ValueError, match="custom_objects"):  # the unpickled space belongs to no env
        sb3.PPO.load(tmp_path / "ppo", env=fresh, device="cpu")
    loaded = sb3.PPO.load(
        tmp_path / "ppo",
        env=fresh,
        device="cpu",
        custom_objects={"observation_space": fresh.observation_space},
    )
    assert loaded.policy.model is fresh.unwrapped.model
    loaded_state = fresh.unwrapped.model.state_dict()
    assert all(torch.equal(trained[k], loaded_state[k]) for k in trained)


def test_space_registry_is_by_identity_and_weak() -> None:
    env = TextGenerationEnv(**env_kwargs())
    space = env.observation_space
    assert env_for_space(space) is env and model_for_space(space) is env.model
    assert model_for_space(copy.deepcopy(space)) is None  # equal is not enough
    del env
    gc.collect()
    assert env_for_space(space) is None  # the registry kept nothing alive
