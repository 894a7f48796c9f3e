"""SFT, preference pairs, the env and the reward model encode a prompt identically (issue 10).

The tokenizer here adds a BOS before a text and an EOS after it (``<bos> $A <eos>``, as a Llama
tokenizer with ``add_eos_token=True``): every stage must start the prompt with the BOS, as in
pre-training, and none may end it with the EOS.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

from agents.sft import Demonstration, tokenize_demonstrations
from reward_models import LearnedRewardModel
from reward_models.encoding import leading_special_tokens
from reward_models.pairs import _left_padded
from reward_models.scoring import encode_completions_for_scoring
from tests.conftest import BOS, EOS, PAD, build_bos_tokenizer, build_tiny_lm
from textrl_env import TextGenerationEnv, TextGenerationVectorEnv
from textrl_env.default_model import DEFAULT_MODEL_PATH

PROMPT = "the movie"
COMPLETION = " was fun"


def no_reward(prompts: list[str], completions: list[str]) -> list[float]:
    return [0.0] * len(completions)


def tiny_reward_model(vocab_size: int) -> GPT2ForSequenceClassification:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=32, n_positions=64, num_labels=1,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
    )  # fmt: skip
    return GPT2ForSequenceClassification(config).eval()


def test_every_stage_encodes_the_prompt_the_same_way() -> None:
    tokenizer = build_bos_tokenizer()
    text_ids = tokenizer.convert_tokens_to_ids(list(PROMPT))
    assert tokenizer(PROMPT)["input_ids"] == [BOS, *text_ids, EOS]  # the template's own rule
    expected = [BOS, *text_ids]

    # The env: the prompt window of the observation, single and vector.
    env = TextGenerationEnv(build_tiny_lm(), tokenizer, [PROMPT, "ab"], no_reward, max_new_tokens=3)
    obs, _ = env.reset(seed=0, options={"prompt": PROMPT})
    window = slice(0, env.prompt_length)
    assert obs["input_ids"][window][obs["attention_mask"][window] == 1].tolist() == expected
    envs = TextGenerationVectorEnv(
        build_tiny_lm(), tokenizer, [PROMPT, "ab"], no_reward, num_envs=2, max_new_tokens=3
    )
    ids, mask = envs.core.encode_prompt_batch([PROMPT])
    assert ids[0][mask[0] == 1].tolist() == expected

    # SFT's prompt block.
    [(sft_prompt, sft_response)] = tokenize_demonstrations(tokenizer, [Demonstration(PROMPT, COMPLETION)])
    assert sft_prompt == expected
    assert sft_response == [*tokenizer.convert_tokens_to_ids(list(COMPLETION)), EOS]

    # The prompts preference pairs are sampled from.
    pair_ids, pair_mask = _left_padded(tokenizer, [PROMPT], torch.device("cpu"))
    assert pair_ids[0][pair_mask[0] == 1].tolist() == expected

    # The reward model: the prompt as above, then the completion and the EOS it is scored at.
    model = tiny_reward_model(len(tokenizer))
    rm_ids, rm_mask = encode_completions_for_scoring(model, tokenizer, [PROMPT], [COMPLETION], 64, "cpu")
    row = rm_ids[0][rm_mask[0] == 1].tolist()
    assert row == expected + sft_response
    reward = LearnedRewardModel(model, tokenizer)
    by_hand = reward.score_tokens(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long))
    torch.testing.assert_close(reward([PROMPT], [COMPLETION]), by_hand)


def test_a_long_prompt_keeps_its_bos_in_sft_and_the_reward_model() -> None:
    tokenizer = build_bos_tokenizer()
    [(prompt, _)] = tokenize_demonstrations(tokenizer, [Demonstration("abcdef", "x")], max_prompt_tokens=3)
    assert prompt == [BOS, *tokenizer.convert_tokens_to_ids(["e", "f"])]
    model = tiny_reward_model(len(tokenizer))
    ids, mask = encode_completions_for_scoring(model, tokenizer, ["abcdef"], ["xy"], 4, "cpu")
    assert ids[0].tolist() == [BOS, *tokenizer.convert_tokens_to_ids(["x", "y"]), EOS]


def test_the_embedded_default_tokenizer_adds_no_special_tokens() -> None:
    # So the env's prompts with the default model, and every test written against them, are unchanged.
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_PATH)
    assert leading_special_tokens(tokenizer) == []
    [(prompt, _)] = tokenize_demonstrations(tokenizer, [Demonstration("the movie was", " fun")])
    assert prompt == tokenizer("the movie was", add_special_tokens=False)["input_ids"]
