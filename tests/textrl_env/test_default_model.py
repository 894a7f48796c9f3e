"""The embedded default model: shipped assets, corpus generator and the reproducible build."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from textrl_env.default_model import (
    DEFAULT_MODEL_ID,
    DEFAULT_MODEL_PATH,
    HELDOUT_SENTIMENT_PROMPTS,
    SENTIMENT_PROMPTS,
    arithmetic_answer,
    arithmetic_prompts,
    generate_corpus,
    sentiment_vocabulary,
)
from textrl_env.default_model import build as build_module
from textrl_env.default_model.corpus import _vader_lexicon

ANALYZER = SentimentIntensityAnalyzer()


def vader(text: str) -> float:
    return ANALYZER.polarity_scores(text)["compound"]


@pytest.fixture(scope="module")
def shipped() -> tuple[torch.nn.Module, object]:
    model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_ID).eval()
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_ID)
    return model, tokenizer


# --- shipped assets ---------------------------------------------------------------------------


def test_assets_are_small_and_complete() -> None:
    names = {p.name for p in DEFAULT_MODEL_PATH.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "build_info.json" in names
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_PATH.iterdir())
    assert total < 5 * 1024 * 1024, f"shipped assets are {total / 1e6:.1f} MB; keep them to a few MB"
    assert Path(DEFAULT_MODEL_ID) == DEFAULT_MODEL_PATH


def test_special_tokens_pad_distinct_from_eos(shipped) -> None:
    model, tokenizer = shipped
    vocab = tokenizer.get_vocab()
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert vocab[tokenizer.pad_token] == tokenizer.pad_token_id
    assert vocab[tokenizer.eos_token] == tokenizer.eos_token_id
    assert tokenizer.bos_token_id == tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.bos_token_id == tokenizer.bos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_model_vocab_matches_tokenizer(shipped) -> None:
    model, tokenizer = shipped
    assert model.config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.config.n_positions >= tokenizer.model_max_length


@pytest.mark.parametrize(
    "text", ["the movie was great", "12+7=19", "i thought the film was dull!", "Héllo  wörld\n"]
)
def test_decode_round_trips_plain_text(shipped, text: str) -> None:
    _, tokenizer = shipped
    assert tokenizer.decode(tokenizer(text).input_ids) == text


def test_digits_are_single_tokens(shipped) -> None:
    _, tokenizer = shipped
    assert tokenizer.convert_ids_to_tokens(tokenizer("12+7=19").input_ids) == list("12+7=19")


def test_shipped_model_answers_with_digits_then_eos(shipped) -> None:
    model, tokenizer = shipped
    prompts = arithmetic_prompts(16, seed=5)
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, do_sample=False, max_new_tokens=4, pad_token_id=tokenizer.pad_token_id)
    new = out[:, batch.input_ids.shape[1] :]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    assert all(text.isdigit() for text in texts), texts
    assert bool((new == tokenizer.eos_token_id).any(dim=1).all())


def test_shipped_model_samples_balanced_reviews(shipped) -> None:
    model, tokenizer = shipped
    torch.manual_seed(0)
    batch = tokenizer(list(SENTIMENT_PROMPTS[:32]) * 2, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(
            **batch, do_sample=True, top_k=0, max_new_tokens=16, pad_token_id=tokenizer.pad_token_id
        )
    new = out[:, batch.input_ids.shape[1] :]
    scores = [vader(t) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    assert float((new == tokenizer.eos_token_id).any(dim=1).float().mean()) >= 0.8
    # Sampling noise on 64 completions is about 0.07, so this bound is loose; build_info holds the
    # 256-sample measurement with the tighter target.
    assert abs(statistics.fmean(scores)) < 0.3
    assert max(scores) > 0.5 and min(scores) < -0.5


def test_build_info_records_targets_met() -> None:
    info = json.loads((DEFAULT_MODEL_PATH / "build_info.json").read_text())
    evaluation = info["evaluation"]
    assert abs(evaluation["sentiment"]["mean"]) <= 0.15
    assert evaluation["sentiment"]["std"] >= 0.3
    assert evaluation["sentiment"]["eos_rate"] >= 0.8
    assert 0.2 <= evaluation["arithmetic"]["exact_match"] <= 0.6
    assert info["n_parameters"] < 2_000_000


# --- corpus -------------------------------------------------------------------------------------


def test_corpus_is_deterministic_per_seed() -> None:
    first = generate_corpus(300, 100, seed=3)
    assert first == generate_corpus(300, 100, seed=3)
    assert first != generate_corpus(300, 100, seed=4)
    assert len(first) == 400
    assert sum("+" in line for line in first) == 100


def test_corpus_sentiment_is_balanced_and_spread() -> None:
    reviews = generate_corpus(3000, 0, seed=0)
    scores = [vader(line) for line in reviews]
    assert abs(statistics.fmean(scores)) < 0.1
    assert max(scores) > 0.8 and min(scores) < -0.8
    assert all(line == line.lower() and line[-1] in ".!" for line in reviews)
    assert 5 <= statistics.fmean(len(line.split()) for line in reviews) <= 12


def test_corpus_arithmetic_lines_are_correct() -> None:
    for line in generate_corpus(0, 200, seed=1):
        prompt, answer = line.split("=")
        assert arithmetic_answer(prompt + "=") == answer


def test_polar_words_come_from_vader_lexicon() -> None:
    lexicon = _vader_lexicon()
    vocabulary = sentiment_vocabulary()
    for kind, words in vocabulary.items():
        assert words, kind
        for word in words:
            assert abs(lexicon[word]) >= 1.5 and (lexicon[word] > 0) == kind.startswith("positive"), word


def test_openers_are_neutral_and_heldout_is_disjoint() -> None:
    assert len(SENTIMENT_PROMPTS) == len(set(SENTIMENT_PROMPTS)) >= 32
    assert len(HELDOUT_SENTIMENT_PROMPTS) >= 12
    assert not set(SENTIMENT_PROMPTS) & set(HELDOUT_SENTIMENT_PROMPTS)
    assert all(vader(p) == 0.0 for p in SENTIMENT_PROMPTS + HELDOUT_SENTIMENT_PROMPTS)
    heldout_starts = tuple(p + " " for p in HELDOUT_SENTIMENT_PROMPTS)
    assert not any(line.startswith(heldout_starts) for line in generate_corpus(2000, 0, seed=0))


@pytest.mark.parametrize(
    ("prompt", "answer"), [("12+7=", "19"), ("0+0=", "0"), ("49+49=", "98"), ("123+1=", "124")]
)
def test_arithmetic_answer_known_answers(prompt: str, answer: str) -> None:
    assert arithmetic_answer(prompt) == answer


@pytest.mark.parametrize("prompt", ["12+7", "12-7=", "a+b=", "", "12+7=19"])
def test_arithmetic_answer_rejects_other_forms(prompt: str) -> None:
    with pytest.raises(ValueError, match="a\\+b="):
        arithmetic_answer(prompt)


def test_arithmetic_prompts_are_seeded_and_in_range() -> None:
    prompts = arithmetic_prompts(50, seed=2, max_operand=9)
    assert prompts == arithmetic_prompts(50, seed=2, max_operand=9)
    for prompt in prompts:
        a, b = prompt.rstrip("=").split("+")
        assert prompt.endswith("=") and 0 <= int(a) <= 9 and 0 <= int(b) <= 9


# --- the build script --------------------------------------------------------------------------


def _tiny_build(out: Path, seed: int = 0, eval_samples: int = 0) -> dict:
    args = [
        "--out",
        str(out),
        "--steps",
        "20",
        "--seed",
        str(seed),
        "--n-reviews",
        "200",
        "--n-arithmetic",
        "50",
    ]
    return build_module.main([*args, "--eval-samples", str(eval_samples)])


def test_tiny_build_is_loadable_and_reproducible(tmp_path: Path) -> None:
    info = _tiny_build(tmp_path / "a", eval_samples=4)
    _tiny_build(tmp_path / "b")
    assert info["config"]["steps"] == 20 and "evaluation" in info
    models = [AutoModelForCausalLM.from_pretrained(tmp_path / name) for name in ("a", "b")]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert models[0].config.vocab_size == len(tokenizer)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    state_a, state_b = (m.state_dict() for m in models)
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()


def test_build_replaces_existing_folder_without_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "assets"
    out.mkdir()
    (out / "stale.txt").write_text("from an older build")
    _tiny_build(out, seed=1)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assets"]  # no staging or backup folders
    assert json.loads((out / "build_info.json").read_text())["config"]["seed"] == 1
