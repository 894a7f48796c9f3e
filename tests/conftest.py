"""Shared offline fixtures: a character-level tokenizer and tiny GPT-2 models built from configs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

PAD, EOS, BOS = 0, 1, 2
CHARS = "abcdefghijklmnopqrstuvwxyz +=0123456789.,!?"


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character; PAD=0, EOS=1, BOS=2 (PAD distinct from EOS, as textrl requires)."""
    vocab = {"<pad>": PAD, "<eos>": EOS, "<bos>": BOS}
    for ch in CHARS:
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", padding_side="left"
    )


def build_bos_tokenizer() -> PreTrainedTokenizerFast:
    """``build_char_tokenizer`` whose special-token template is Llama-style ``<bos> $A <eos>``.

    With ``add_special_tokens=True`` it puts a BOS before a text and an EOS after it, so it shows
    both halves of the prompt rule: the BOS is kept, the appended EOS is not.
    """
    tokenizer = build_char_tokenizer()  # a fresh backend each call: the template change stays here
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", BOS), ("<eos>", EOS)]
    )
    return tokenizer


def build_tiny_lm(vocab_size: int = len(CHARS) + 3, seed: int = 0, n_positions: int = 64) -> GPT2LMHeadModel:
    """A one-layer GPT-2 with random weights (seeded)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_layer=1,
        n_head=2,
        n_embd=32,
        n_positions=n_positions,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    return GPT2LMHeadModel(config).eval()


def pad_vocabulary(model: torch.nn.Module, extra: int = 13, logit: float = 1e3) -> torch.nn.Module:
    """A copy of ``model`` with ``extra`` more output ids, as checkpoints padded to a multiple of 64 are.

    The real ids keep their weights; the extra ids get an output bias of ``logit`` (the others 0),
    so they would take nearly all the probability anywhere their logits are not dropped.
    """
    padded: Any = copy.deepcopy(model)
    n = padded.get_output_embeddings().out_features
    padded.resize_token_embeddings(n + extra, mean_resizing=False)
    bias = torch.zeros(n + extra)
    bias[n:] = logit
    padded.get_output_embeddings().bias = torch.nn.Parameter(bias)  # nn.Linear adds it when set
    return padded.eval()


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny models run ~40x faster on one intra-op thread when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def char_tokenizer() -> PreTrainedTokenizerFast:
    return build_char_tokenizer()


@pytest.fixture
def make_tiny_lm() -> Callable[..., GPT2LMHeadModel]:
    return build_tiny_lm


@pytest.fixture
def tiny_lm() -> GPT2LMHeadModel:
    """A tiny LM with a 64-token vocabulary (no tokenizer needed)."""
    return build_tiny_lm(vocab_size=64)


@pytest.fixture
def char_lm() -> GPT2LMHeadModel:
    """A tiny LM whose vocabulary matches ``char_tokenizer``."""
    return build_tiny_lm()
