"""The labeler seam and the simulated annotator's Bradley-Terry noise."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agents.pipeline.labelers import Labeler, Pair, SimulatedLabeler, check_labels, read_pairs, write_pairs


def length_gold(prompts: list[str], completions: list[str]) -> list[float]:
    """A gold score that is easy to compute by hand: a tenth of the completion's length."""
    return [len(c) / 10 for c in completions]


def test_probabilities_are_the_bradley_terry_sigmoid() -> None:
    labeler = SimulatedLabeler(length_gold, temperature=0.5)
    pairs = [Pair("x", "p", "aaaaa", "a"), Pair("y", "p", "a", "aaa"), Pair("z", "p", "ab", "cd")]
    expected = [1 / (1 + math.exp(-0.4 / 0.5)), 1 / (1 + math.exp(0.2 / 0.5)), 0.5]
    assert labeler.probabilities(pairs) == pytest.approx(expected)


def test_labels_follow_the_noise_level() -> None:
    clear = [Pair(f"c{i}", "p", "aaaaaaaaaa", "a") for i in range(400)]  # gap 0.9
    ties = [Pair(f"t{i}", "p", "ab", "cd") for i in range(400)]
    sharp = SimulatedLabeler(length_gold, temperature=0.05).label(clear, Path("unused"))
    assert all(choice == "a" for choice in sharp.values())
    noisy = SimulatedLabeler(length_gold, temperature=0.9).label(clear, Path("unused"))
    share = sum(choice == "a" for choice in noisy.values()) / len(noisy)
    assert share == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.06)  # wrong labels happen
    coin = SimulatedLabeler(length_gold, temperature=0.1).label(ties, Path("unused"))
    assert 0.4 < sum(choice == "a" for choice in coin.values()) / len(coin) < 0.6


def test_labels_are_seeded_per_pair_not_by_order() -> None:
    pairs = [Pair(f"p{i}", "p", "ab", "cd") for i in range(50)]
    labeler = SimulatedLabeler(length_gold, temperature=0.1, seed=3)
    forward = labeler.label(pairs, Path("unused"))
    assert labeler.label(list(reversed(pairs)), Path("unused")) == forward
    assert SimulatedLabeler(length_gold, temperature=0.1, seed=4).label(pairs, Path("unused")) != forward


def test_protocol_and_label_checks() -> None:
    assert isinstance(SimulatedLabeler(length_gold), Labeler)
    pairs = [Pair("a1", "p", "x", "y")]
    assert check_labels(pairs, {"a1": "b"}, object()) == {"a1": "b"}
    with pytest.raises(ValueError, match="must map ids of the round's pairs to 'a' or 'b'"):
        check_labels(pairs, {"a1": "left"}, object())
    with pytest.raises(ValueError, match="labelled none of the 1 pairs"):
        check_labels(pairs, {}, object())


def test_pairs_file_round_trips(tmp_path: Path) -> None:
    pairs = [Pair("r1-00000", "the film was", " good.", " bad."), Pair("r1-00001", "i", ' "x"', " y")]
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    assert read_pairs(tmp_path / "pairs.jsonl") == pairs
    assert (tmp_path / "pairs.jsonl").read_text().splitlines()[0].startswith('{"id": "r1-00000", "prompt"')
