"""LearnedRewardModel: batching, padding, dropout, normalisation, save/load, errors."""

import json
import os

import pytest
import torch

from reward_models import compute_rewards
from reward_models.learned import SETTINGS_FILE, LearnedRewardModel

PROMPTS = ["the film", "the film", "this movie was", "", "the story is"]
COMPLETIONS = [" was great fun", " was dull", " a sad and boring and ugly and poor film", "", " excellent"]


def test_batched_scores_equal_one_at_a_time(tokenizer, make_reward_model):
    reward = LearnedRewardModel(make_reward_model(), tokenizer, batch_size=2)
    batched = reward(PROMPTS, COMPLETIONS)
    alone = torch.cat([reward([p], [c]) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)])
    assert batched.shape == (5,) and batched.dtype == torch.float32
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)
    assert len(set(batched.tolist())) == 5  # different texts, different scores
    torch.testing.assert_close(compute_rewards(reward, PROMPTS, COMPLETIONS), batched)


def test_tokenizer_without_pad_token_pads_with_eos(tokenizer_without_pad, make_reward_model):
    reward = LearnedRewardModel(make_reward_model(pad_token_id=None), tokenizer_without_pad, batch_size=8)
    batched = reward(PROMPTS, COMPLETIONS)
    alone = torch.cat([reward([p], [c]) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


def test_dropout_is_off_even_if_someone_switched_training_mode_on(tokenizer, make_reward_model):
    model = make_reward_model(resid_pdrop=0.5, embd_pdrop=0.5, attn_pdrop=0.5)
    reward = LearnedRewardModel(model, tokenizer)
    first = reward(PROMPTS, COMPLETIONS)
    model.train()
    torch.testing.assert_close(reward(PROMPTS, COMPLETIONS), first, rtol=0, atol=0)
    assert not reward(PROMPTS, COMPLETIONS).requires_grad


def test_append_eos_changes_where_the_score_is_read(tokenizer, make_reward_model):
    model = make_reward_model()
    with_eos = LearnedRewardModel(model, tokenizer)(PROMPTS, COMPLETIONS)
    without = LearnedRewardModel(model, tokenizer, append_eos=False)(PROMPTS, COMPLETIONS)
    assert not torch.allclose(with_eos, without)


def test_long_texts_keep_their_end(tokenizer, make_reward_model):
    reward = LearnedRewardModel(make_reward_model(), tokenizer, max_length=3, append_eos=False)
    # only "was great fun" fits, so the opening does not matter
    torch.testing.assert_close(
        reward(["the film"], [" was great fun"]), reward(["a dull story"], [" was great fun"])
    )


def test_empty_texts_and_empty_batches(tokenizer, make_reward_model):
    reward = LearnedRewardModel(make_reward_model(), tokenizer, append_eos=False)
    assert bool(torch.isfinite(reward([""], [""])).all())
    assert reward([], []).shape == (0,)
    with pytest.raises(TypeError, match="completion 0 of type int"):
        reward(["p"], [3])


def test_normalize_to_gives_mean_zero_std_one(tokenizer, make_reward_model):
    reward = LearnedRewardModel(make_reward_model(), tokenizer)
    raw = reward(PROMPTS, COMPLETIONS)
    gain, bias = reward.normalize_to(PROMPTS, COMPLETIONS)
    scores = reward(PROMPTS, COMPLETIONS).double()
    assert float(scores.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(scores.std()) == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(scores.float(), gain * raw + bias)
    with pytest.raises(ValueError, match="no spread"):
        reward.normalize_to(["p", "p"], ["same", "same"])
    with pytest.raises(ValueError, match="at least 2 samples"):
        reward.normalize_to(["p"], ["x"])


def test_save_and_load_round_trip(tokenizer, make_reward_model, tmp_path):
    reward = LearnedRewardModel(make_reward_model(), tokenizer, separator=" ")
    reward.normalize_to(PROMPTS, COMPLETIONS)
    expected = reward(PROMPTS, COMPLETIONS)
    path = reward.save_pretrained(tmp_path / "rm")
    assert (path / "model.safetensors").is_file()
    settings = json.loads((path / SETTINGS_FILE).read_text())
    assert settings["separator"] == " " and settings["append_eos"] is True
    loaded = LearnedRewardModel.from_pretrained(path, device="cpu")
    assert (loaded.gain, loaded.bias, loaded.separator) == (reward.gain, reward.bias, " ")
    torch.testing.assert_close(loaded(PROMPTS, COMPLETIONS), expected, rtol=1e-5, atol=1e-6)
    assert LearnedRewardModel(str(path), gain=1.0, bias=0.0).gain == 1.0  # explicit arguments win


def test_failed_save_keeps_the_previous_directory(tokenizer, make_reward_model, tmp_path, monkeypatch):
    reward = LearnedRewardModel(make_reward_model(), tokenizer)
    path = reward.save_pretrained(tmp_path / "rm")
    before = sorted(os.listdir(path))
    weights = (path / "model.safetensors").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(reward.tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        reward.save_pretrained(path)
    assert sorted(os.listdir(path)) == before and (path / "model.safetensors").read_bytes() == weights
    assert os.listdir(tmp_path) == ["rm"]  # the half-written temp directory is gone


def test_refuses_models_with_more_than_one_output(tokenizer, make_reward_model, tmp_path):
    two = make_reward_model(num_labels=2)
    with pytest.raises(ValueError, match="num_labels=2.*num_labels=1"):
        LearnedRewardModel(two, tokenizer)
    two.save_pretrained(tmp_path / "two")
    tokenizer.save_pretrained(tmp_path / "two")
    with pytest.raises(ValueError, match="num_labels=2"):
        LearnedRewardModel(tmp_path / "two")


def test_argument_errors(tokenizer, make_reward_model):
    with pytest.raises(ValueError, match="no tokenizer"):
        LearnedRewardModel(make_reward_model())
    with pytest.raises(TypeError, match="model id, a path or a PreTrainedModel"):
        LearnedRewardModel(42, tokenizer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size=0"):
        LearnedRewardModel(make_reward_model(), tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="gain=0"):
        LearnedRewardModel(make_reward_model(), tokenizer, gain=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_scores_on_cuda_match_cpu(tokenizer, make_reward_model):
    model = make_reward_model()
    on_cpu = LearnedRewardModel(model, tokenizer, device="cpu")(PROMPTS, COMPLETIONS)
    on_gpu = LearnedRewardModel(model, tokenizer, device="cuda")
    assert next(model.parameters()).is_cuda
    torch.testing.assert_close(on_gpu(PROMPTS, COMPLETIONS), on_cpu, rtol=1e-4, atol=1e-5)


def test_max_length_is_capped_at_the_model_positions() -> None:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from reward_models import LearnedRewardModel
    from tests.conftest import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_head=2, n_embd=16, n_positions=16, num_labels=1,
                        pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    reward = LearnedRewardModel(GPT2ForSequenceClassification(config), tokenizer, max_length=512)
    assert reward.max_length == 16
    scores = reward(["a long prompt that is"], ["longer than sixteen characters"])  # must not index past 16
    assert len(scores) == 1
