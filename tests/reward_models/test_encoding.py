"""The one prompt encoder: the tokenizer's leading special tokens, then the prompt, never an appended EOS."""

import pytest
from tokenizers import processors

from reward_models.encoding import (
    encode_continuation,
    encode_prompt,
    encode_prompts,
    leading_special_tokens,
    truncate_left,
)
from tests.conftest import BOS, EOS, build_bos_tokenizer, build_char_tokenizer


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(list(text))


def test_leading_special_tokens_follow_the_tokenizers_template() -> None:
    bos = build_bos_tokenizer()
    assert bos("ab")["input_ids"] == [BOS, *ids_of(bos, "ab"), EOS]  # the template adds both ends
    assert leading_special_tokens(bos) == [BOS]  # only the start is a prompt's
    assert leading_special_tokens(build_char_tokenizer()) == []  # no template: nothing added
    eos_only = build_char_tokenizer()
    eos_only.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <eos>", special_tokens=[("<eos>", EOS)]
    )
    assert leading_special_tokens(eos_only) == []  # an appended EOS never starts a prompt


def test_encode_prompts_puts_the_bos_first_and_appends_nothing() -> None:
    tokenizer = build_bos_tokenizer()
    assert encode_prompts(tokenizer, ["ab", "c"]) == [
        [BOS, *ids_of(tokenizer, "ab")],
        [BOS, *ids_of(tokenizer, "c")],
    ]
    assert encode_prompt(tokenizer, "ab") == [BOS, *ids_of(tokenizer, "ab")]
    assert encode_prompt(tokenizer, "") == [BOS]  # an empty prompt is the BOS alone
    assert encode_prompt(build_char_tokenizer(), "") == []
    assert encode_prompts(tokenizer, []) == []
    assert encode_continuation(tokenizer, "ab") == ids_of(tokenizer, "ab")  # no special tokens at all


def test_a_cut_keeps_the_bos_and_the_end_of_the_prompt() -> None:
    tokenizer = build_bos_tokenizer()
    assert encode_prompt(tokenizer, "abcdef", max_tokens=3) == [BOS, *ids_of(tokenizer, "ef")]
    assert encode_prompt(tokenizer, "ab", max_tokens=8) == [BOS, *ids_of(tokenizer, "ab")]
    assert encode_prompt(build_char_tokenizer(), "abcdef", max_tokens=3) == ids_of(tokenizer, "def")


def test_truncate_left_known_answers() -> None:
    assert truncate_left([1, 2, 3, 4, 5], 3) == [3, 4, 5]
    assert truncate_left([1, 2, 3, 4, 5], 3, keep_first=1) == [1, 4, 5]
    assert truncate_left([1, 2, 3], 5, keep_first=1) == [1, 2, 3]
    assert truncate_left([1, 2, 3], None) == [1, 2, 3]
    assert truncate_left([1, 2, 3, 4], 2, keep_first=3) == [1, 2]  # more leading ids than room
    with pytest.raises(ValueError, match="max_tokens must be >= 1 or None, got 0"):
        truncate_left([1], 0)


def test_a_prompt_that_is_not_a_string_is_named() -> None:
    with pytest.raises(TypeError, match=r"prompt 1 must be a str, got int: 3"):
        encode_prompts(build_char_tokenizer(), ["ab", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"a prompt must be a str, got NoneType"):
        encode_prompt(build_char_tokenizer(), None)  # type: ignore[arg-type]
