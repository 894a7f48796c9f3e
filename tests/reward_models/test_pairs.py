"""Preference pairs sampled from a causal LM and labelled by a gold reward."""

import pytest
import torch

from reward_models import SentimentReward, compute_rewards
from reward_models.pairs import _left_padded, generate_preference_pairs

PROMPTS = ["the film", "this movie was", "the story is", "the actors", ""]
GOLD = SentimentReward()


def test_pairs_are_ranked_by_the_gold_reward_with_a_clear_gap(policy, tokenizer):
    pairs = generate_preference_pairs(
        policy, tokenizer, PROMPTS, GOLD, n_pairs=40, max_new_tokens=6, seed=3, min_margin=0.2
    )
    assert len(pairs) == 40
    prompts = [p.prompt for p in pairs]
    chosen = compute_rewards(GOLD, prompts, [p.chosen for p in pairs])
    rejected = compute_rewards(GOLD, prompts, [p.rejected for p in pairs])
    assert bool((chosen - rejected >= 0.2 - 1e-6).all())
    assert set(prompts) <= set(PROMPTS)
    assert all(p.chosen.strip() and p.rejected.strip() and "[EOS]" not in p.chosen for p in pairs)


def test_seeded_and_leaves_the_callers_rng_and_tokenizer_alone(policy, tokenizer):
    side = tokenizer.padding_side
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = generate_preference_pairs(policy, tokenizer, PROMPTS, GOLD, n_pairs=10, max_new_tokens=5, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    again = generate_preference_pairs(policy, tokenizer, PROMPTS, GOLD, n_pairs=10, max_new_tokens=5, seed=7)
    other = generate_preference_pairs(policy, tokenizer, PROMPTS, GOLD, n_pairs=10, max_new_tokens=5, seed=8)
    assert first == again and first != other
    assert tokenizer.padding_side == side


def test_left_padding_puts_every_prompt_at_the_right_edge(tokenizer):
    ids, mask = _left_padded(tokenizer, ["the film was", "good", ""], torch.device("cpu"))
    vocab = tokenizer.get_vocab()
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 1]]
    assert ids[1].tolist() == [tokenizer.pad_token_id] * 2 + [vocab["good"]]
    assert ids[2, -1] == tokenizer.eos_token_id  # an empty prompt starts from EOS, GPT-2 style


def test_impossible_margin_is_a_clear_error(policy, tokenizer):
    # VADER compound lies in [-1, 1], so no two completions differ by 2.5
    with pytest.raises(ValueError, match=r"found only 0 of 5 pairs .*'sentiment'.* lower min_margin"):
        generate_preference_pairs(
            policy,
            tokenizer,
            PROMPTS,
            GOLD,
            n_pairs=5,
            max_new_tokens=4,
            min_margin=2.5,
            max_rounds=2,
            batch_size=4,
        )


def test_argument_errors(policy, tokenizer):
    with pytest.raises(ValueError, match="prompts is empty"):
        generate_preference_pairs(policy, tokenizer, [], GOLD, n_pairs=1)
    with pytest.raises(ValueError, match="n_pairs=0"):
        generate_preference_pairs(policy, tokenizer, PROMPTS, GOLD, n_pairs=0)
    with pytest.raises(ValueError, match="temperature=0"):
        generate_preference_pairs(policy, tokenizer, PROMPTS, GOLD, n_pairs=1, temperature=0)
    with pytest.raises(ValueError, match="min_margin=-1"):
        generate_preference_pairs(policy, tokenizer, PROMPTS, GOLD, n_pairs=1, min_margin=-1)
