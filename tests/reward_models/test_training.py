"""Bradley-Terry reward-model training, end to end on generated pairs."""

import json
import math
import time

import pytest
import torch

from reward_models import LearnedRewardModel, SentimentReward
from reward_models.pairs import generate_preference_pairs
from reward_models.preferences import PreferencePair, write_preferences
from reward_models.training import evaluate_pairs, preference_loss, train_reward_model

PROMPTS = ["the film", "this movie was", "the story is", "the actors", "it was a", "the music and"]


def test_preference_loss_known_answers():
    r_c, r_r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    # -log sigmoid(1) = log(1 + e^-1) = 0.313262; -log sigmoid(0) = log 2 = 0.693147
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert float(preference_loss(r_c, r_r)) == pytest.approx(expected, rel=1e-6)
    # margin 1 turns the first pair's gap into 0 and the second's into -1
    expected = (math.log(2.0) + math.log1p(math.exp(1.0))) / 2
    assert float(preference_loss(r_c, r_r, margin=1.0)) == pytest.approx(expected, rel=1e-6)
    # centring adds coef * mean((r_c + r_r)^2) = 0.1 * (1 + 0) / 2
    base = float(preference_loss(r_c, r_r))
    assert float(preference_loss(r_c, r_r, center_rewards_coef=0.1)) == pytest.approx(base + 0.05, rel=1e-6)
    with pytest.raises(ValueError, match=r"r_chosen=\(2,\), r_rejected=\(3,\)"):
        preference_loss(r_c, torch.zeros(3))


def test_reward_model_learns_generated_preferences(policy, tokenizer, make_reward_model, tmp_path):
    start = time.perf_counter()
    pairs = generate_preference_pairs(
        policy, tokenizer, PROMPTS, SentimentReward(), n_pairs=800, max_new_tokens=8, seed=1, min_margin=0.5
    )
    write_preferences(tmp_path / "pairs.jsonl", pairs)  # train from the file, as the CLI does
    result = train_reward_model(
        make_reward_model(seed=1),
        tokenizer,
        tmp_path / "pairs.jsonl",
        eval_fraction=0.2,
        epochs=3,
        batch_size=16,
        learning_rate=3e-3,
        seed=1,
        output_dir=tmp_path / "rm",
        progress=False,
    )
    elapsed = time.perf_counter() - start
    print(
        f"held-out accuracy {result.eval_accuracy:.3f} per epoch {result.eval_accuracy_per_epoch}, {elapsed:.1f}s"
    )
    assert result.eval_accuracy is not None and result.eval_accuracy >= 0.85
    assert elapsed < 60
    assert len(result.train_loss) == 3 * math.ceil(640 / 16)
    first, last = result.train_loss[:10], result.train_loss[-10:]
    assert sum(last) / 10 < 0.5 * sum(first) / 10  # the loss fell, not just the loop ran
    assert result.eval_loss is not None and result.eval_loss < math.log(2)

    # the saved model scores like the trained one and agrees with the gold reward on new text
    saved = json.loads((tmp_path / "rm" / "textrl_reward.json").read_text())
    assert (
        saved["training"]["eval_accuracy"] == result.eval_accuracy and saved["training"]["train_pairs"] == 640
    )
    reward = LearnedRewardModel(tmp_path / "rm", device="cpu")
    texts = (["the film"] * 2, [" was wonderful and fun", " was awful and boring"])
    torch.testing.assert_close(reward(*texts), result.reward_model()(*texts))
    good, bad = reward(*texts).tolist()
    assert good > bad


def test_seeded_runs_repeat_and_eval_pairs_can_be_given(tokenizer, make_reward_model):
    pairs = [
        PreferencePair("the film", " was great", " was awful"),
        PreferencePair("it", " is fun", " is dull"),
    ] * 8
    held_out = [PreferencePair("the plot", " was good", " was bad")]
    runs = [
        train_reward_model(
            make_reward_model(seed=0),
            tokenizer,
            pairs,
            eval_pairs=held_out,
            batch_size=4,
            seed=5,
            progress=False,
        )
        for _ in range(2)
    ]
    assert runs[0].train_loss == runs[1].train_loss
    assert runs[0].eval_accuracy in (0.0, 1.0) and runs[0].eval_accuracy_per_epoch == [runs[0].eval_accuracy]
    accuracy, loss = evaluate_pairs(runs[0].model, tokenizer, held_out)
    assert (accuracy, loss) == pytest.approx((runs[0].eval_accuracy, runs[0].eval_loss))


def test_centring_pulls_an_offset_back_to_zero(tokenizer, make_reward_model):
    # The Bradley-Terry loss only sees differences, so a constant offset in every reward survives
    # training; the centring term is what removes it.
    pairs = [
        PreferencePair("the film", " was great", " was awful"),
        PreferencePair("it", " is fun", " is dull"),
    ] * 8

    def mean_abs_sum(coef: float) -> float:
        model = make_reward_model(seed=0)
        with torch.no_grad():  # ln_f's bias along the score head adds +5 to every reward
            w = model.score.weight[0]
            model.transformer.ln_f.bias.copy_(5.0 * w / w.square().sum())
        result = train_reward_model(
            model, tokenizer, pairs, eval_fraction=0, epochs=5, batch_size=8, learning_rate=1e-2,
            center_rewards_coef=coef, progress=False,
        )  # fmt: skip
        assert result.eval_accuracy is None
        reward = result.reward_model()
        prompts = [p.prompt for p in pairs]
        total = reward(prompts, [p.chosen for p in pairs]) + reward(prompts, [p.rejected for p in pairs])
        return float(total.abs().mean())

    without, centred = mean_abs_sum(0.0), mean_abs_sum(1.0)
    assert without > 5.0
    assert centred < 0.2 * without


def test_training_errors(tokenizer, make_reward_model, tmp_path):
    pairs = [PreferencePair("p", "good", "bad")] * 4
    model = make_reward_model()
    with pytest.raises(ValueError, match="num_labels=2"):
        train_reward_model(make_reward_model(num_labels=2), tokenizer, pairs, progress=False)
    with pytest.raises(ValueError, match="learning_rate=0"):
        train_reward_model(model, tokenizer, pairs, learning_rate=0, progress=False)
    with pytest.raises(ValueError, match="epochs=0"):
        train_reward_model(model, tokenizer, pairs, epochs=0, progress=False)
    with pytest.raises(ValueError, match="eval_fraction=1.0"):
        train_reward_model(model, tokenizer, pairs, eval_fraction=1.0, progress=False)
    with pytest.raises(ValueError, match="center_rewards_coef=-1"):
        train_reward_model(model, tokenizer, pairs, center_rewards_coef=-1, progress=False)
    with pytest.raises(ValueError, match="no training pairs"):
        train_reward_model(model, tokenizer, [], progress=False)
    with pytest.raises(TypeError, match=r"train_pairs\[0\] is tuple"):
        train_reward_model(model, tokenizer, [("p", "good", "bad")], progress=False)
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"prompt": "p", "chosen": "good"}\n')
    with pytest.raises(ValueError, match=f"{bad_file}:1: missing key"):
        train_reward_model(model, tokenizer, bad_file, progress=False)


def test_trains_from_a_causal_lm_checkpoint_path(policy, tokenizer, tmp_path):
    # A path to a plain language model gets a fresh one-output head, as with "gpt2" from the hub.
    policy.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    pairs = [PreferencePair("the film", " was great", " was awful")] * 4
    result = train_reward_model(
        tmp_path / "lm", None, pairs, eval_fraction=0, batch_size=4, device="cpu", progress=False,
        output_dir=tmp_path / "rm",
    )  # fmt: skip
    assert result.model.config.num_labels == 1 and len(result.train_loss) == 1
    assert LearnedRewardModel(tmp_path / "rm").model.config.num_labels == 1


def test_progress_bar_reports_epochs_and_loss(tokenizer, make_reward_model, capsys):
    pairs = [PreferencePair("the film", " was great", " was awful")] * 4
    result = train_reward_model(
        make_reward_model(), tokenizer, pairs, eval_fraction=0.25, epochs=2, batch_size=3
    )
    out = capsys.readouterr().out
    assert "reward model" in out and "epoch 2" in out and f"{result.train_loss[-1]:.4f}" in out
