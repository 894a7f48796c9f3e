"""Reading a scalar at the last real token, whatever the padding."""

import pytest
import torch

from reward_models.scoring import (
    encode_for_scoring,
    last_token_index,
    pad_id,
    sequence_scores,
    tokenize_texts,
)


def test_last_token_index_for_left_and_right_padding():
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 0]])
    assert last_token_index(mask).tolist() == [1, 3, 3, 1]
    with pytest.raises(ValueError, match="all zero"):
        last_token_index(torch.tensor([[1, 0], [0, 0]]))


def test_tokenize_texts_right_pads_and_keeps_the_end(tokenizer):
    ids, mask = tokenize_texts(tokenizer, ["the film was good", "bad", ""], max_length=3, device="cpu")
    vocab = tokenizer.get_vocab()
    assert ids[0].tolist() == [vocab["film"], vocab["was"], vocab["good"]]  # "the" cut from the left
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]  # an empty text keeps one position
    assert ids[1, 1:].tolist() == [tokenizer.pad_token_id] * 2
    start, _ = tokenize_texts(tokenizer, ["the film was good"], max_length=3, device="cpu", keep_end=False)
    assert start[0].tolist() == [vocab["the"], vocab["film"], vocab["was"]]


def test_append_eos_once(tokenizer):
    eos = tokenizer.eos_token_id
    ids, mask = tokenize_texts(tokenizer, ["good", "good [EOS]"], 8, "cpu", append_eos=True)
    assert ids[0, :2].tolist() == [tokenizer.get_vocab()["good"], eos] and int(mask[0].sum()) == 2
    assert int(mask[1].sum()) == 2  # already ended with EOS: not doubled


def test_pad_id_falls_back_to_eos_and_explains_when_neither_exists(tokenizer_without_pad):
    no_pad = tokenizer_without_pad
    assert no_pad.pad_token_id is None and pad_id(no_pad) == no_pad.eos_token_id

    class Bare:
        pad_token_id = None
        eos_token_id = None

    with pytest.raises(
        ValueError, match="neither a pad nor an EOS token.*tokenizer.pad_token = tokenizer.eos_token"
    ):
        pad_id(Bare())


def test_matches_the_models_own_pooling_on_unpadded_text(tokenizer, make_reward_model):
    model = make_reward_model().eval()
    ids, mask = tokenize_texts(tokenizer, ["the film was great fun"], 32, "cpu")
    with torch.no_grad():
        ours = sequence_scores(model, ids, mask)
        theirs = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    torch.testing.assert_close(ours, theirs)


def test_left_and_right_padding_give_the_same_scores(tokenizer, make_reward_model):
    model = make_reward_model().eval()
    texts = ["the film was great fun", "bad", "the plot and the actors were dull"]
    right_ids, right_mask = tokenize_texts(tokenizer, texts, 32, "cpu")  # (B, T)
    lengths = right_mask.sum(dim=1)
    left_ids, left_mask = torch.full_like(right_ids, 0), torch.zeros_like(right_mask)
    for i, n in enumerate(lengths.tolist()):
        left_ids[i, -n:], left_mask[i, -n:] = right_ids[i, :n], 1
    with torch.no_grad():
        right = sequence_scores(model, right_ids, right_mask)
        left = sequence_scores(model, left_ids, left_mask)
        alone = torch.cat(
            [
                sequence_scores(model, right_ids[i : i + 1, :n], right_mask[i : i + 1, :n])
                for i, n in enumerate(lengths.tolist())
            ]
        )
    torch.testing.assert_close(right, alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(left, alone, rtol=1e-5, atol=1e-6)


def test_pad_equal_to_eos_does_not_hide_a_final_eos(tokenizer_without_pad, make_reward_model):
    # With pad == EOS, the model's own pooling treats a real trailing EOS as padding; ours reads the
    # mask, so a text ending in EOS is scored at that EOS.
    tok = tokenizer_without_pad
    model = make_reward_model(pad_token_id=tok.eos_token_id).eval()
    ids, mask = tokenize_texts(tok, ["good fun", "good fun [EOS]"], 8, "cpu")
    with torch.no_grad():
        ours = sequence_scores(model, ids, mask)
        theirs = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    assert ours[0] != ours[1]  # the EOS position was read
    torch.testing.assert_close(theirs[0], theirs[1])  # the model's pooling skipped it


def test_encoder_models_use_their_own_pooling(tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        pad_token_id=0,
    )
    bert = BertForSequenceClassification(config).eval()
    ids, mask = encode_for_scoring(bert, tokenizer, ["good fun", "the film was bad"], 16, "cpu")
    assert int(mask[0].sum()) == 2  # no EOS appended for encoders
    with torch.no_grad():
        torch.testing.assert_close(
            sequence_scores(bert, ids, mask), bert(input_ids=ids, attention_mask=mask).logits[:, 0]
        )
