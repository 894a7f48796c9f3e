"""textrl/Preference-v0 and its shipped reward model; the env checkers and vector-vs-sync run in test_registration."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
)

import textrl_env  # noqa: F401  (registers the ids)
from reward_models import LearnedRewardModel, SentimentReward, read_preferences
from tests.conftest import BOS, CHARS, EOS, PAD, build_char_tokenizer
from textrl_env.default_model import DEFAULT_MODEL_PATH, DEFAULT_REWARD_MODEL_PATH, SENTIMENT_PROMPTS
from textrl_env.default_model.build_reward_model import main as build_main
from textrl_env.tasks.preference import PreferenceEnv, PreferenceVectorEnv, sample_completions

# Clearly positive and clearly negative endings of review openers, written by hand (not sampled).
POSITIVE = [
    " amazing.",
    " a masterpiece from start to finish!",
    " brilliant and the music was wonderful.",
    " so much fun and really heartwarming!",
    " fantastic and the acting was excellent.",
    " a real treat.",
]
NEGATIVE = [
    " awful.",
    " a disaster from start to finish!",
    " boring and the music was dreadful.",
    " so dull and really depressing!",
    " horrible and the acting was disappointing.",
    " a total waste.",
]


@pytest.fixture(scope="module")
def shipped() -> LearnedRewardModel:
    return LearnedRewardModel(DEFAULT_REWARD_MODEL_PATH, device="cpu")


def tiny_reward_model_dir(path: Path, gain: float = 2.0, bias: float = 5.0) -> Path:
    """A randomly initialised one-output GPT-2 on the character tokenizer, saved with save_pretrained."""
    torch.manual_seed(3)
    config = GPT2Config(
        vocab_size=len(CHARS) + 3, n_layer=1, n_head=2, n_embd=16, n_positions=256, num_labels=1,
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )  # fmt: skip
    model = GPT2ForSequenceClassification(config).eval()
    return LearnedRewardModel(model, build_char_tokenizer(), gain=gain, bias=bias).save_pretrained(path)


def run_tokens(env: gym.Env, tokens: list[int], prompt: str) -> tuple[float, dict]:
    """Reset on ``prompt``, step ``tokens`` until the episode ends; returns (return, last info)."""
    env.reset(seed=0, options={"prompt": prompt})
    total = 0.0
    for token in tokens:
        _, reward, terminated, truncated, info = env.step(token)
        total += float(reward)
        if terminated or truncated:
            return total, info
    raise AssertionError("the episode did not end")


def test_shipped_model_loads_through_plain_from_pretrained(shipped: LearnedRewardModel) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(DEFAULT_REWARD_MODEL_PATH).eval()
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_REWARD_MODEL_PATH)
    assert model.config.num_labels == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id
    # The plain transformers forward, scored (as trained) at an appended EOS, right-padded.
    texts = ["the movie was" + c + tokenizer.eos_token for c in POSITIVE[:3] + NEGATIVE[:3]]
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        plain = model(**batch).logits.squeeze(-1)  # (B,)
    ours = shipped.raw_scores(["the movie was"] * 6, POSITIVE[:3] + NEGATIVE[:3])
    torch.testing.assert_close(plain, ours, rtol=1e-4, atol=1e-4)


def test_shipped_model_ranks_positive_above_negative(shipped: LearnedRewardModel) -> None:
    prompts = ["the movie was", "i thought the plot was"]
    for prompt in prompts:
        pos = shipped([prompt] * len(POSITIVE), POSITIVE)
        neg = shipped([prompt] * len(NEGATIVE), NEGATIVE)
        wins = (pos[:, None] > neg[None, :]).float().mean().item()  # over all 36 (pos, neg) pairs
        assert wins >= 0.9, (prompt, pos.tolist(), neg.tolist())


def test_shipped_normalisation_fits_the_default_policy(shipped: LearnedRewardModel) -> None:
    """Fails when the default policy was rebuilt without rebuilding the reward model."""
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_PATH).eval()
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_PATH)
    prompts, completions = sample_completions(policy, tokenizer, SENTIMENT_PROMPTS, 256, 16, seed=123)
    scores = shipped(prompts, completions).tolist()
    assert abs(statistics.fmean(scores)) < 0.25
    assert 0.75 < statistics.stdev(scores) < 1.3
    gold = SentimentReward()(prompts, completions)
    assert statistics.correlation(scores, gold) > 0.7  # the proxy tracks the gold scorer
    info = json.loads((DEFAULT_REWARD_MODEL_PATH / "build_info.json").read_text())
    assert info["eval_accuracy"] >= 0.85


def test_make_steps_and_return_is_score_minus_kl(shipped: LearnedRewardModel) -> None:
    env = gym.make("textrl/Preference-v0")
    base = env.unwrapped
    assert isinstance(base, PreferenceEnv)
    assert base.reward_model.name == str(DEFAULT_REWARD_MODEL_PATH)
    with torch.no_grad():  # move the policy away from its frozen reference, so the KL term is not 0
        gen = torch.Generator().manual_seed(0)
        for p in base.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    tokens = base.tokenizer(" amazing.")["input_ids"] + [base.eos_token_id]
    total, info = run_tokens(env, tokens, "the movie was")
    assert info["completion"] == " amazing."
    score = shipped(["the movie was"], [" amazing."])[0].item()
    assert info["score"] == pytest.approx(score, abs=1e-5)
    assert abs(info["kl"].sum()) > 1e-3
    assert total == pytest.approx(score - base.kl_coef * info["kl"].sum(), abs=1e-5)
    assert base.kl_coef == 0.05 and base.max_new_tokens == 16 and base.prompt_length == 16


def test_custom_reward_model_path_is_used(tmp_path: Path, shipped: LearnedRewardModel) -> None:
    path = tiny_reward_model_dir(tmp_path / "rm")
    env = gym.make("textrl/Preference-v0", reward_model_path=path)
    assert env.unwrapped.reward_model.name == str(path)
    tokens = env.unwrapped.tokenizer(" awful.")["input_ids"] + [env.unwrapped.eos_token_id]
    _, info = run_tokens(env, tokens, "the plot was")
    expected = LearnedRewardModel(path)(["the plot was"], [" awful."])[0].item()
    assert info["score"] == pytest.approx(expected, abs=1e-5)
    assert info["score"] != pytest.approx(shipped(["the plot was"], [" awful."])[0].item(), abs=1e-3)


def test_reward_model_object_is_used_directly() -> None:
    def constant(prompts: list[str], completions: list[str]) -> list[float]:
        return [0.25] * len(completions)

    env = gym.make("textrl/Preference-v0", reward_model=constant, kl_coef=0.0)
    _, info = run_tokens(env, [env.unwrapped.eos_token_id], "the movie was")
    assert info["score"] == pytest.approx(0.25)


@pytest.mark.parametrize("kind", ["missing", "not_a_model"])
def test_bad_reward_model_path_names_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "not_a_model":
        path.mkdir()
        (path / "notes.txt").write_text("no weights here")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        gym.make("textrl/Preference-v0", reward_model_path=path)


def test_reward_model_and_path_together_is_an_error() -> None:
    with pytest.raises(ValueError, match="pass one of them"):
        PreferenceEnv(reward_model=SentimentReward(), reward_model_path=DEFAULT_REWARD_MODEL_PATH)


def test_normalize_fits_the_env_policy_and_leaves_the_given_model_alone(tmp_path: Path) -> None:
    given = LearnedRewardModel(tiny_reward_model_dir(tmp_path / "rm"))
    env = PreferenceEnv(reward_model=given, normalize=True, normalize_samples=64)
    assert (given.gain, given.bias) == (2.0, 5.0)
    fitted = env.reward_model
    assert fitted is not given and fitted.model is given.model
    prompts, completions = sample_completions(env.model, env.tokenizer, env.prompts, 64, env.max_new_tokens)
    scores = fitted(prompts, completions)
    assert abs(scores.mean().item()) < 1e-4 and scores.std().item() == pytest.approx(1.0, abs=1e-4)
    vector = PreferenceVectorEnv(num_envs=2, reward_model=given, normalize=True, normalize_samples=64)
    assert (vector.core.reward_model.gain, vector.core.reward_model.bias) == (fitted.gain, fitted.bias)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"normalize": True, "reward_model": SentimentReward()}, TypeError, "LearnedRewardModel"),
        ({"normalize": "yes"}, TypeError, "normalize"),
        ({"normalize": True, "normalize_samples": 1}, ValueError, "normalize_samples"),
    ],
)
def test_bad_normalize_settings(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        PreferenceEnv(**kwargs)


def test_vector_env_matches_single_env_reward() -> None:
    envs = gym.make_vec("textrl/Preference-v0", num_envs=2, vectorization_mode="vector_entry_point")
    assert isinstance(envs.unwrapped, PreferenceVectorEnv)
    envs.reset(seed=0, options={"prompt": ["the movie was", "the plot was"]})
    eos = envs.unwrapped.core.eos_token_id
    _, reward, terminated, _, info = envs.step(torch.tensor([eos, eos]))
    assert terminated.tolist() == [True, True]
    expected = LearnedRewardModel(DEFAULT_REWARD_MODEL_PATH)(["the movie was", "the plot was"], ["", ""])
    np.testing.assert_allclose(np.asarray(info["score"]), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(reward), expected.numpy(), atol=1e-5
    )  # KL is 0: policy == reference


def test_build_script_smoke(tmp_path: Path) -> None:
    args = [
        "--pairs",
        "48",
        "--eval-pairs",
        "16",
        "--epochs",
        "1",
        "--normalize-samples",
        "32",
        "--seed",
        "5",
    ]
    info = build_main(["--out", str(tmp_path / "a"), *args])
    out = tmp_path / "a"
    assert {"config.json", "model.safetensors", "tokenizer.json", "build_info.json", "pairs.jsonl"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "build_info.json").read_text()) == info
    assert 0.0 <= info["eval_accuracy"] <= 1.0 and info["train_pairs"] == 48
    pairs = read_preferences(out / "pairs.jsonl")
    gold = SentimentReward()
    assert len(pairs) == 48 and all(
        gold([p.prompt], [p.chosen])[0] > gold([p.prompt], [p.rejected])[0] for p in pairs
    )
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 1
    rm = LearnedRewardModel(out)
    assert (rm.gain, rm.bias) == (info["normalization"]["gain"], info["normalization"]["bias"])
    assert not list(tmp_path.glob(".*"))  # no temp folder left behind
    # Same seed, same weights.
    build_main(["--out", str(tmp_path / "b"), "--no-pairs", *args])
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert not (tmp_path / "b" / "pairs.jsonl").exists()


def test_build_rejects_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pairs"):
        build_main(["--out", str(tmp_path / "x"), "--pairs", "0"])
