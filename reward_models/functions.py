"""Function rewards: plain callables over lists of strings, no model weights.

Every reward here takes ``(prompts, completions, **kwargs)`` and returns one float per completion
(a ``list[float]``; :class:`WeightedSumReward` returns a tensor). An empty completion is valid input
and has a defined score, documented per class; a completion that is not a ``str`` is a TypeError.
Each reward has a ``name``, used in logs and in error messages.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from reward_models.checks import finite_number
from reward_models.protocol import RewardModel, compute_rewards, resolve_reward, reward_name


def check_texts(prompts: Sequence[Any], completions: Sequence[Any], name: str) -> None:
    """Check that there is one prompt per completion and that every completion is a string.

    Raises:
        TypeError: a completion is not a ``str`` (decode token ids with the tokenizer first).
        ValueError: the two lists differ in length.
    """
    if isinstance(completions, str) or isinstance(prompts, str):
        raise TypeError(f"reward {name!r} takes lists of strings, not a single string; wrap it in a list")
    if len(prompts) != len(completions):
        raise ValueError(
            f"reward {name!r} got {len(prompts)} prompts but {len(completions)} completions; "
            "pass one prompt per completion"
        )
    for i, completion in enumerate(completions):
        if not isinstance(completion, str):
            raise TypeError(
                f"reward {name!r} got completion {i} of type {type(completion).__name__} ({completion!r}); "
                "completions must be str -- decode token ids with tokenizer.batch_decode first"
            )


class SentimentReward:
    """VADER compound sentiment of each completion, in ``[-1, 1]``; the prompt is ignored.

    VADER is a lexicon of words rated by human annotators plus rules for negation, intensifiers
    and punctuation (Hutto & Gilbert 2014, the ``vaderSentiment`` package). An empty completion
    scores 0.0, as does any text without rated words.

    Example:
        >>> SentimentReward()(["The film"], ["was wonderful"])
        [0.5719]
    """

    name = "sentiment"

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()  # loads the lexicon once

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        check_texts(prompts, completions, self.name)
        return [float(self._analyzer.polarity_scores(text)["compound"]) for text in completions]


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_TRAILING_PUNCTUATION = ".,;:!?\"')]}"


def leading_answer(completion: str) -> str:
    """The default answer parser: the number or word the completion starts with.

    Leading whitespace is skipped. A leading number (``-12``, ``3.5``) is taken whole, so
    ``" 12. Done"`` gives ``"12"``; otherwise the first whitespace-separated word without trailing
    punctuation (``"Paris, of course"`` gives ``"Paris"``). An empty completion gives ``""``.
    """
    text = completion.strip()
    number = _NUMBER.match(text)
    if number:
        return number.group(0)
    words = text.split(maxsplit=1)
    return words[0].rstrip(_TRAILING_PUNCTUATION) if words else ""


class ExactMatchReward:
    """1.0 when the parsed completion equals the prompt's answer, else 0.0 (or partial credit).

    Args:
        answers: the expected answer for each prompt, as a mapping ``prompt -> answer`` or a
            function ``answer(prompt)`` (e.g. one that computes ``a+b`` from ``"a+b="``).
        parser: turns a completion into an answer string; the default,
            :func:`leading_answer`, takes the leading number or word. Both sides are compared
            after stripping surrounding whitespace.
        partial_credit: if True, a wrong answer earns ``0.5 * p / len(expected)`` where ``p`` is
            the length of the longest common prefix of the parsed and expected answers, so ``"12"``
            for ``"123"`` earns 1/3 and a wrong first character earns 0. Partial credit is always
            below 0.5, so an exact answer stays clearly better. Useful on arithmetic, where a
            policy learns the leading digits first.

    An empty completion parses to ``""`` and scores 0.0 (unless the expected answer is empty).

    Example:
        >>> reward = ExactMatchReward({"2+2=": "4", "10+5=": "15"}, partial_credit=True)
        >>> reward(["2+2=", "10+5=", "10+5="], ["4", " 1", ""])
        [1.0, 0.25, 0.0]
    """

    name = "exact_match"

    def __init__(
        self,
        answers: Callable[[str], str] | Mapping[str, str],
        parser: Callable[[str], str] | None = None,
        partial_credit: bool = False,
    ) -> None:
        if not (isinstance(answers, Mapping) or callable(answers)):
            raise TypeError(
                f"answers must be a mapping prompt -> answer or a function of the prompt; "
                f"got {type(answers).__name__}"
            )
        if parser is not None and not callable(parser):
            raise TypeError(f"parser must be a function str -> str; got {type(parser).__name__}")
        self.answers = answers
        self.parser = parser if parser is not None else leading_answer
        self.partial_credit = bool(partial_credit)

    def expected(self, prompt: str) -> str:
        """The expected answer for ``prompt``."""
        if isinstance(self.answers, Mapping):
            if prompt not in self.answers:
                raise ValueError(
                    f"reward {self.name!r} has no answer for prompt {prompt!r}; add it to the answers "
                    "mapping, or pass a function that computes the answer from the prompt"
                )
            answer = self.answers[prompt]
        else:
            answer = self.answers(prompt)
        if not isinstance(answer, str):
            raise TypeError(
                f"the answer for prompt {prompt!r} is {type(answer).__name__} ({answer!r}); answers must be "
                "str (e.g. str(a + b))"
            )
        return answer.strip()

    def score(self, prompt: str, completion: str) -> float:
        """Score one completion."""
        expected = self.expected(prompt)
        parsed = self.parser(completion)
        if not isinstance(parsed, str):
            raise TypeError(f"parser returned {type(parsed).__name__} ({parsed!r}); it must return str")
        parsed = parsed.strip()
        if parsed == expected:
            return 1.0
        if not self.partial_credit or not expected:
            return 0.0
        prefix = len(os.path.commonprefix([parsed, expected]))
        return 0.5 * prefix / len(expected)

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        check_texts(prompts, completions, self.name)
        return [self.score(p, c) for p, c in zip(prompts, completions, strict=True)]


class LengthReward:
    """Reward for hitting a target length: ``-|length - target| / target``, so 0 is best.

    Args:
        target: the wanted length (> 0).
        unit: ``"words"`` (whitespace-separated) or ``"chars"``.

    An empty completion has length 0 and scores -1.0.

    Example:
        >>> LengthReward(target=4)(["", ""], ["one two three four", "one two"])
        [0.0, -0.5]
    """

    name = "length"

    def __init__(self, target: int, unit: Literal["words", "chars"] = "words") -> None:
        if isinstance(target, bool) or not isinstance(target, int) or target < 1:
            raise ValueError(f"target={target!r} is invalid; expected a positive int (a length in {unit})")
        if unit not in ("words", "chars"):
            raise ValueError(f"unit={unit!r} is invalid; expected 'words' or 'chars'")
        self.target = target
        self.unit = unit

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        check_texts(prompts, completions, self.name)
        lengths = [len(c.split()) if self.unit == "words" else len(c) for c in completions]
        return [-abs(n - self.target) / self.target for n in lengths]


class RegexReward:
    """``reward`` when the pattern is found in the completion (``re.search``), else ``-penalty``.

    Args:
        pattern: a regular expression (string or compiled), e.g. ``r"^\\s*\\d+\\s*$"`` for
            "answers with a bare number".
        reward: score of a matching completion.
        penalty: subtracted from 0 for a completion that does not match.

    An empty completion is matched like any other string (``r"^$"`` matches it).

    Example:
        >>> RegexReward(r"\\bplease\\b", reward=1.0, penalty=0.5)(["", ""], ["yes please", "no"])
        [1.0, -0.5]
    """

    def __init__(self, pattern: str | re.Pattern[str], reward: float = 1.0, penalty: float = 0.0) -> None:
        try:
            self.pattern = re.compile(pattern)
        except (re.error, TypeError) as err:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {err}") from err
        for label, value in [("reward", reward), ("penalty", penalty)]:
            finite_number(label, value)
        self.reward = float(reward)
        self.penalty = float(penalty)
        self.name = f"regex({self.pattern.pattern})"

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        check_texts(prompts, completions, self.name)
        return [self.reward if self.pattern.search(c) else -self.penalty for c in completions]


class WeightedSumReward:
    """``sum_i weight_i * reward_i(prompts, completions)``, each part validated on its own.

    Parts may use textrl's or TRL's calling convention (see :func:`~reward_models.protocol.resolve_reward`).
    Each part goes through :func:`compute_rewards`, so a part that returns NaN, infinity or the wrong
    number of scores is named in the error. Keyword arguments reach every part.

    Args:
        rewards: ``[(reward, weight), ...]``, at least one; weights are finite numbers.

    Example:
        >>> total = WeightedSumReward([(LengthReward(2), 1.0), (RegexReward("!"), 0.5)])
        >>> total(["", ""], ["hi there!", "hello"]).tolist()
        [0.5, -0.5]
    """

    def __init__(self, rewards: Sequence[tuple[RewardModel, float]]) -> None:
        if isinstance(rewards, str | bytes) or not isinstance(rewards, Iterable):
            raise TypeError(
                f"rewards must be a list of (reward, weight) pairs, got {type(rewards).__name__} {rewards!r}"
            )
        parts = list(rewards)
        if not parts:
            raise ValueError("WeightedSumReward needs at least one (reward, weight) pair in rewards=[...]")
        for i, part in enumerate(parts):
            if not (isinstance(part, tuple) and len(part) == 2 and callable(part[0])):
                raise TypeError(
                    f"rewards[{i}] is {part!r}; expected a (reward, weight) tuple with a callable reward"
                )
            weight = part[1]
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise TypeError(
                    f"rewards[{i}]: weight {weight!r} of {reward_name(part[0])!r} must be a number"
                )
            if not math.isfinite(weight):
                raise ValueError(
                    f"rewards[{i}]: weight {weight!r} of {reward_name(part[0])!r} is invalid; expected a finite number"
                )
        self.parts = [(reward, float(weight)) for reward, weight in parts]
        self._resolved = [(resolve_reward(reward), weight) for reward, weight in self.parts]
        self.name = "+".join(f"{weight:g}*{reward_name(reward)}" for reward, weight in self.parts)

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> torch.Tensor:
        check_texts(prompts, completions, self.name)
        total = torch.zeros(len(completions), dtype=torch.float32)
        for reward, weight in self._resolved:
            total += weight * compute_rewards(reward, prompts, completions, **kwargs)
        return total
