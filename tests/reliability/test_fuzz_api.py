"""Property-based fuzz of the public API's arguments: bad input is a ValueError / TypeError naming the argument.

Each test draws one argument from a mix of valid and nonsense values (wrong types, negatives, NaN,
huge numbers, strings of numbers) and passes it to a public constructor or method. Whatever
happens, only two outcomes are allowed: it works, or it raises ``ValueError`` / ``TypeError`` whose
message mentions the argument (so the user knows what to fix). Any other exception (an
``AssertionError`` from torch, an ``IndexError``, a bare ``TypeError`` from ``+``) fails the test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import GRPO, PPO, REINFORCE, RLOO
from reward_models import (
    AdaptiveKLController,
    ExactMatchReward,
    FixedKLController,
    LengthReward,
    RegexReward,
    RewardTrainingConfig,
    WeightedSumReward,
)
from tests.agents.test_ppo import make_env
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationEnv, TextGenerationVectorEnv

# Values a confused user (or a YAML file read as strings) might pass for any argument.
NONSENSE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([0, -1, 2**62, 0.5, -0.5, 1.5, math.nan, math.inf, -math.inf, 1e30]),
    st.sampled_from(["10", "", "auto", "cpu", "gpu", "cuda", "k1", "nan"]),
    st.just([]),
    st.just([1, 2]),
    st.just({"a": 1}),
    st.just(object()),
)
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_outcome(call: Callable[[], Any], argument: str) -> None:
    """Run ``call``; allow success or a ValueError / TypeError that names ``argument``."""
    try:
        call()
    except (ValueError, TypeError) as err:
        assert argument in str(err), f"{type(err).__name__} does not name {argument!r}: {err}"


AGENTS = [PPO, REINFORCE, RLOO, GRPO]
AGENT_SETTINGS = [
    "learning_rate",
    "adam_eps",
    "max_grad_norm",
    "n_epochs",
    "minibatch_size",
    "clip_range",
    "target_kl",
    "kl_coef",
    "kl_target",
    "kl_horizon",
    "normalize_rewards",
    "missing_eos_penalty",
    "on_nonfinite",
]


@pytest.fixture(scope="module")
def env() -> TextGenerationVectorEnv:
    return make_env(num_envs=4, max_new_tokens=2)


GRPO_SETTINGS = [
    "num_generations",
    "beta",
    "loss_type",
    "epsilon",
    "epsilon_high",
    "scale_rewards",
    "num_iterations",
]


@pytest.mark.parametrize("algo", AGENTS, ids=lambda a: a.__name__)
@pytest.mark.parametrize("name", AGENT_SETTINGS)
@FUZZ
@given(value=NONSENSE)
def test_agent_settings(env: TextGenerationVectorEnv, algo: type, name: str, value: Any) -> None:
    policy = "LMActorCriticPolicy" if algo is PPO else "LMPolicy"
    extra = {"num_generations": 2} if algo is GRPO else {}  # the env has 4 rows
    check_outcome(lambda: algo(policy, env, verbose=0, **extra, **{name: value}), name)


@pytest.mark.parametrize("name", GRPO_SETTINGS)
@FUZZ
@given(value=NONSENSE)
def test_grpo_settings(env: TextGenerationVectorEnv, name: str, value: Any) -> None:
    check_outcome(lambda: GRPO("LMPolicy", env, verbose=0, num_generations=2, **{name: value}), name)


@pytest.mark.parametrize("name", ["device", "n_envs", "seed", "verbose", "policy_kwargs"])
@FUZZ
@given(value=NONSENSE)
def test_agent_constructor_arguments(env: TextGenerationVectorEnv, name: str, value: Any) -> None:
    check_outcome(lambda: REINFORCE("LMPolicy", env, **{"verbose": 0, name: value}), name)


@pytest.fixture(scope="module")
def agent(env: TextGenerationVectorEnv) -> REINFORCE:
    return REINFORCE("LMPolicy", env, verbose=0, seed=0)


@pytest.mark.parametrize("name", ["total_timesteps", "log_interval"])
@FUZZ
@given(value=NONSENSE)
def test_learn_arguments(agent: REINFORCE, name: str, value: Any) -> None:
    kwargs = {"total_timesteps": 1, "log_interval": 1, name: value}
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if name == "total_timesteps" and numeric and value == value and value > 8:
        return  # a valid long run: keep the test short
    check_outcome(lambda: agent.learn(**kwargs), name)


@pytest.mark.parametrize("name", ["prompts", "n_samples", "seed"])
@FUZZ
@given(value=NONSENSE)
def test_evaluate_arguments(agent: REINFORCE, name: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"prompts": ["ab"], "n_samples": 1, "seed": 0, name: value}
    if name == "n_samples" and isinstance(value, int) and value > 8:
        return  # valid, just long
    check_outcome(lambda: agent.evaluate(**kwargs), name)


def test_the_three_raw_errors_of_the_agent_api(agent: REINFORCE, env: TextGenerationVectorEnv) -> None:
    """The issue's three: each names the value and the fix."""
    before = agent.num_timesteps
    with pytest.raises(ValueError, match=r"total_timesteps must be >= 1, got -5; pass e.g. total_timesteps="):
        agent.learn(total_timesteps=-5)
    with pytest.raises(TypeError, match=r"total_timesteps must be an int, got str '10'"):
        agent.learn("10")  # type: ignore[arg-type]
    assert agent.num_timesteps == before
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' but CUDA is not available.*device='cpu'"):
            REINFORCE("LMPolicy", env, device="cuda", verbose=0)
        with pytest.raises(ValueError, match=r"device='cuda' but CUDA is not available"):
            TextGenerationVectorEnv(
                build_tiny_lm(), build_char_tokenizer(), prompts=["ab"], reward_model=lambda p, c: [0.0] * len(c),
                device="cuda",
            )  # fmt: skip


def test_learn_accepts_an_integral_float_as_stable_baselines3_does(agent: REINFORCE) -> None:
    agent.learn(4.0)  # type: ignore[arg-type]
    assert agent.num_timesteps >= 4


ENV_ARGUMENTS = [
    "num_envs",
    "kl_coef",
    "kl_estimator",
    "max_new_tokens",
    "max_prompt_tokens",
    "temperature",
    "device",
    "prompts",
    "reward_model",
    "autoreset_mode",
    "logits_source",
]


def zero_reward(prompts: list[str], completions: list[str]) -> list[float]:
    return [0.0] * len(completions)


MODEL, TOKENIZER = build_tiny_lm(), build_char_tokenizer()


@pytest.mark.parametrize("vector", [False, True], ids=["single", "vector"])
@pytest.mark.parametrize("name", ENV_ARGUMENTS)
@FUZZ
@given(value=NONSENSE)
def test_env_arguments(vector: bool, name: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"prompts": ["ab", "cd"], "reward_model": zero_reward, "max_new_tokens": 2}
    if vector:
        kwargs["num_envs"] = 2
    elif name in ("num_envs", "autoreset_mode", "logits_source"):
        return  # vector-env only
    if name in ("num_envs", "max_new_tokens", "max_prompt_tokens") and isinstance(value, int) and value > 64:
        return  # valid but slow (or a context-length error, checked elsewhere)
    kwargs[name] = value
    cls = TextGenerationVectorEnv if vector else TextGenerationEnv
    check_outcome(lambda: cls(MODEL, TOKENIZER, **kwargs), name)


REWARD_CONSTRUCTORS: dict[str, Callable[[Any], Any]] = {
    "target": lambda v: LengthReward(target=v),
    "unit": lambda v: LengthReward(target=3, unit=v),
    "pattern": lambda v: RegexReward(pattern=v),
    "reward": lambda v: RegexReward("a", reward=v),
    "penalty": lambda v: RegexReward("a", penalty=v),
    "answers": lambda v: ExactMatchReward(answers=v),
    "rewards": lambda v: WeightedSumReward(rewards=v),
    "kl_coef": lambda v: FixedKLController(kl_coef=v),
    "init_kl_coef": lambda v: AdaptiveKLController(init_kl_coef=v, target=1.0, horizon=100),
    "target=": lambda v: AdaptiveKLController(init_kl_coef=0.1, target=v, horizon=100),
    "horizon": lambda v: AdaptiveKLController(init_kl_coef=0.1, target=1.0, horizon=v),
    "epochs": lambda v: RewardTrainingConfig(epochs=v),
    "batch_size": lambda v: RewardTrainingConfig(batch_size=v),
    "learning_rate": lambda v: RewardTrainingConfig(learning_rate=v),
    "margin": lambda v: RewardTrainingConfig(margin=v),
    "eval_fraction": lambda v: RewardTrainingConfig(eval_fraction=v),
    "max_length": lambda v: RewardTrainingConfig(max_length=v),
}


@pytest.mark.parametrize("name", sorted(REWARD_CONSTRUCTORS))
@FUZZ
@given(value=NONSENSE)
def test_reward_model_constructors(name: str, value: Any) -> None:
    check_outcome(lambda: REWARD_CONSTRUCTORS[name](value), name.rstrip("="))
