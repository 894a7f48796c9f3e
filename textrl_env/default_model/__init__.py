"""The embedded default model: a tiny GPT-2 and BPE tokenizer that ship with textrl.

The whole toolkit runs offline on it: ``gym.make("textrl/Sentiment-v0")`` loads it when no model is
given. It is built by ``python -m textrl_env.default_model.build`` from a corpus the project
generates itself (:mod:`textrl_env.default_model.corpus`), and loads like any checkpoint::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from textrl_env.default_model import DEFAULT_MODEL_ID

    model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_ID)
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_ID)

This module imports neither torch nor transformers, so ``import textrl_env`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from textrl_env.default_model.corpus import (
    HELDOUT_SENTIMENT_PROMPTS,
    SENTIMENT_PROMPTS,
    arithmetic_answer,
    arithmetic_prompts,
    generate_corpus,
    sentiment_vocabulary,
)

DEFAULT_MODEL_PATH: Path = Path(__file__).resolve().parent / "assets"
"""Folder holding the shipped model and tokenizer (``config.json``, ``model.safetensors``, ...)."""

DEFAULT_MODEL_ID: str = str(DEFAULT_MODEL_PATH)
"""``DEFAULT_MODEL_PATH`` as a string, for ``from_pretrained`` and for ``model=`` arguments."""

DEFAULT_REWARD_MODEL_PATH: Path = Path(__file__).resolve().parent / "reward_model"
"""Folder of the shipped reward model of ``textrl/Preference-v0`` (built by ``build_reward_model``)."""

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_MODEL_PATH",
    "DEFAULT_REWARD_MODEL_PATH",
    "HELDOUT_SENTIMENT_PROMPTS",
    "SENTIMENT_PROMPTS",
    "arithmetic_answer",
    "arithmetic_prompts",
    "generate_corpus",
    "sentiment_vocabulary",
]
