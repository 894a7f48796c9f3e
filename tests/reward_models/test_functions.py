"""Function rewards: known answers, empty completions, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings

from reward_models import compute_rewards
from reward_models.functions import (
    ExactMatchReward,
    LengthReward,
    RegexReward,
    SentimentReward,
    WeightedSumReward,
    leading_answer,
)
from textrl_env.testing import prompts_and_completions

SENTIMENT = SentimentReward()


def test_sentiment_known_answers():
    scores = SENTIMENT(["", "", ""], ["a wonderful, great film", "a terrible, awful film", "a film"])
    # compound = s / sqrt(s^2 + 15) over the summed lexicon valences, rounded to 4 places:
    # wonderful 2.7 + great 3.1 = 5.8; terrible -2.1 + awful -2.0 = -4.1
    assert scores[0] == pytest.approx(5.8 / math.sqrt(5.8**2 + 15), abs=1e-4)
    assert scores[1] == pytest.approx(-4.1 / math.sqrt(4.1**2 + 15), abs=1e-4)
    assert scores[2] == 0.0
    assert SENTIMENT(["x"], [""]) == [0.0]  # empty completion: no rated words
    assert SENTIMENT.name == "sentiment"


def test_sentiment_ignores_the_prompt():
    assert SENTIMENT(["I hate it"], ["fine"]) == SENTIMENT(["I love it"], ["fine"])


@pytest.mark.parametrize(
    "completion, parsed",
    [
        (" 12. Done", "12"),
        ("-7 apples", "-7"),
        ("3.50", "3.50"),
        ("Paris, of course", "Paris"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_leading_answer(completion, parsed):
    assert leading_answer(completion) == parsed


def test_exact_match_known_answers():
    reward = ExactMatchReward(lambda prompt: str(sum(int(x) for x in prompt.rstrip("=").split("+"))))
    prompts = ["2+3=", "2+3=", "40+2=", "40+2=", "40+2="]
    assert reward(prompts, ["5", " 5 is the answer", "42\n", "24", ""]) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert reward.name == "exact_match"


def test_exact_match_partial_credit():
    reward = ExactMatchReward({"p": "123"}, partial_credit=True)
    scores = reward(["p"] * 5, ["123", "12", "124", "9", ""])
    assert scores == pytest.approx([1.0, 1 / 3, 1 / 3, 0.0, 0.0])
    assert max(scores[1:]) < 0.5
    without = ExactMatchReward({"p": "123"})
    assert without(["p", "p"], ["12", "124"]) == [0.0, 0.0]


def test_exact_match_custom_parser_and_errors():
    reward = ExactMatchReward({"q": "yes"}, parser=lambda c: c.lower().split("answer:")[-1])
    assert reward(["q", "q"], ["Answer: YES", "answer: no"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="no answer for prompt 'other'"):
        reward(["other"], ["yes"])
    with pytest.raises(TypeError, match="answers must be str"):
        ExactMatchReward(lambda p: 5)(["q"], ["5"])  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="answers must be a mapping"):
        ExactMatchReward(42)  # type: ignore[arg-type]


def test_length_reward():
    words = LengthReward(target=4)
    assert words(["", "", ""], ["one two three four", "one two", ""]) == [0.0, -0.5, -1.0]
    chars = LengthReward(target=5, unit="chars")
    assert chars(["", ""], ["abcde", "abcdefghij"]) == [0.0, -1.0]
    with pytest.raises(ValueError, match="target=0"):
        LengthReward(target=0)
    with pytest.raises(ValueError, match="unit='tokens'"):
        LengthReward(target=3, unit="tokens")  # type: ignore[arg-type]


def test_regex_reward():
    reward = RegexReward(r"^\s*\d+\s*$", reward=2.0, penalty=0.5)
    assert reward(["", "", ""], [" 42 ", "42 apples", ""]) == [2.0, -0.5, -0.5]
    assert RegexReward(r"^$")([""], [""]) == [1.0]
    with pytest.raises(ValueError, match=r"pattern '\(' is not a valid regular expression"):
        RegexReward("(")


def test_weighted_sum_reward():
    total = WeightedSumReward([(LengthReward(2), 1.0), (RegexReward("!"), 0.5)])
    out = total(["", ""], ["hi there!", "hello"])
    torch.testing.assert_close(out, torch.tensor([0.5, -0.5]))
    assert total.name == "1*length+0.5*regex(!)"
    with pytest.raises(ValueError, match="at least one"):
        WeightedSumReward([])
    with pytest.raises(ValueError, match="weight nan"):
        WeightedSumReward([(SENTIMENT, float("nan"))])


def test_weighted_sum_names_a_part_that_returns_nan():
    def flaky_reward(prompts, completions):
        return [math.log(len(c)) if c else float("-inf") for c in completions]

    total = WeightedSumReward([(SENTIMENT, 1.0), (flaky_reward, 0.1)])
    with pytest.raises(
        ValueError, match=r"reward 'flaky_reward' returned an infinite value .* completion 1 \(''\)"
    ):
        total(["", ""], ["good", ""])


def test_users_nan_reward_is_named():
    def my_ratio(prompts, completions):
        return [c.count("a") / len(c) if c else float("nan") for c in completions]

    with pytest.raises(ValueError, match=r"reward 'my_ratio' returned NaN .* completion 0 \(''\)"):
        compute_rewards(my_ratio, ["p"], [""])


@pytest.mark.parametrize(
    "reward",
    [
        SENTIMENT,
        ExactMatchReward({"p": "1"}),
        LengthReward(3),
        RegexReward("a"),
        WeightedSumReward([(SENTIMENT, 1)]),
    ],
)
def test_non_string_completion_is_a_type_error(reward):
    with pytest.raises(TypeError, match=r"completion 1 of type list .*batch_decode"):
        reward(["p", "p"], ["1", [101, 102]])
    with pytest.raises(TypeError, match="not a single string"):
        reward("p", "1")
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(["p", "p"], ["1"])


@settings(max_examples=40, deadline=None)
@given(prompts_and_completions())
def test_every_function_reward_scores_any_text(pair):
    prompts, completions = pair
    rewards = [
        SENTIMENT,
        ExactMatchReward(lambda p: "7", partial_credit=True),
        LengthReward(5, unit="chars"),
        RegexReward(r"\d"),
        WeightedSumReward([(SENTIMENT, 0.5), (LengthReward(3), 2.0)]),
    ]
    for reward in rewards:
        scores = compute_rewards(reward, prompts, completions)
        assert scores.shape == (len(completions),) and bool(torch.isfinite(scores).all())
    sentiment = compute_rewards(SENTIMENT, prompts, completions)
    assert bool(((sentiment >= -1) & (sentiment <= 1)).all())
    empty = torch.tensor([c == "" for c in completions])
    assert bool((sentiment[empty] == 0).all())
