"""Tiny models and a word-level tokenizer built offline, shared by the reward-model tests."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

# Words VADER rates, plus neutral filler. No negations or "but": VADER flips or reweights around
# them, which a bag-of-words reward model cannot see from a handful of pairs.
POSITIVE = [
    "good",
    "great",
    "wonderful",
    "love",
    "happy",
    "fun",
    "excellent",
    "best",
    "nice",
    "beautiful",
    "brilliant",
    "enjoyable",
]
NEGATIVE = [
    "bad",
    "terrible",
    "awful",
    "hate",
    "sad",
    "boring",
    "worst",
    "ugly",
    "poor",
    "horrible",
    "dull",
    "annoying",
]
NEUTRAL = [
    "the",
    "film",
    "movie",
    "was",
    "is",
    "a",
    "and",
    "story",
    "plot",
    "actors",
    "it",
    "this",
    "scene",
    "music",
    "ending",
]
SPECIALS = ["[PAD]", "[UNK]", "[EOS]"]
VOCAB = SPECIALS + POSITIVE + NEGATIVE + NEUTRAL


def make_tokenizer(pad: bool = True) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"pad_token": "[PAD]"} if pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="[EOS]", unk_token="[UNK]", **special)


def tiny_config(**overrides) -> GPT2Config:
    settings = dict(
        vocab_size=len(VOCAB),
        n_layer=1,
        n_head=2,
        n_embd=32,
        n_positions=64,
        num_labels=1,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=2,
    )
    settings.update(overrides)
    return GPT2Config(**settings)


def tiny_reward_model(seed: int = 0, **overrides) -> GPT2ForSequenceClassification:
    torch.manual_seed(seed)
    return GPT2ForSequenceClassification(tiny_config(**overrides))


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return make_tokenizer()


@pytest.fixture(scope="session")
def tokenizer_without_pad() -> PreTrainedTokenizerFast:
    return make_tokenizer(pad=False)


@pytest.fixture
def make_reward_model():
    """``make_reward_model(seed=0, **config_overrides)`` -> a fresh tiny GPT2ForSequenceClassification."""
    return tiny_reward_model


@pytest.fixture(scope="session")
def policy() -> GPT2LMHeadModel:
    """A random tiny causal LM: near-uniform next-token distributions, so samples vary a lot."""
    torch.manual_seed(0)
    return GPT2LMHeadModel(tiny_config()).eval()
