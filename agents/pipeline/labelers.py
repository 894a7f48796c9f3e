"""Who says which response of a pair is better: the :class:`Labeler` seam, and the simulated annotator.

A labeler takes a round's pairs (also written to ``pairs_file``, JSONL ``{"id", "prompt", "a", "b"}``,
so a labeler that serves them elsewhere, e.g. to people in a browser, can read the file) and returns
``{pair id: "a" | "b"}``. Pairs it leaves out are not trained on.

The default, :class:`SimulatedLabeler`, is a gold scorer with Bradley-Terry noise, as people are
modelled in RLHF: ``P(a preferred) = sigmoid((gold_a - gold_b) / temperature)``. Near-ties are
close to coin flips and even clear pairs are sometimes labelled the wrong way round.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from reward_models import PreferencePair, RewardModel, compute_rewards

Choice = Literal["a", "b"]


@dataclass(frozen=True)
class Pair:
    """Two responses to one prompt, to be compared; ``id`` is unique within a run (``"r2-0017"``)."""

    id: str
    prompt: str
    a: str
    b: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "prompt": self.prompt, "a": self.a, "b": self.b}

    def preference(self, choice: Choice) -> PreferencePair:
        """The labelled pair as the reward model trains on it."""
        chosen, rejected = (self.a, self.b) if choice == "a" else (self.b, self.a)
        return PreferencePair(self.prompt, chosen, rejected)


@runtime_checkable
class Labeler(Protocol):
    """Pairs in, preferences out: ``label(pairs, pairs_file) -> {pair id: "a" | "b"}``."""

    def label(self, pairs: Sequence[Pair], pairs_file: Path) -> Mapping[str, Choice]: ...


class SimulatedLabeler:
    """A simulated annotator: the gold scorer's verdict through Bradley-Terry noise (seeded per pair).

    Args:
        gold: the scorer whose preferences are simulated (e.g. ``SentimentReward()``).
        temperature: the noise scale; smaller is more reliable.
        seed: with the pair's id, decides each coin flip (so labels do not depend on order).
    """

    def __init__(self, gold: RewardModel, temperature: float = 0.1, seed: int = 0) -> None:
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.gold = gold
        self.temperature = float(temperature)
        self.seed = int(seed)

    def probabilities(self, pairs: Sequence[Pair]) -> list[float]:
        """``P(a preferred)`` of each pair."""
        prompts = [p.prompt for p in pairs]
        gold = compute_rewards(self.gold, prompts + prompts, [p.a for p in pairs] + [p.b for p in pairs])
        gap = (gold[: len(pairs)] - gold[len(pairs) :]) / self.temperature  # (N,)
        return [1.0 / (1.0 + math.exp(-max(min(g, 50.0), -50.0))) for g in gap.tolist()]

    def label(self, pairs: Sequence[Pair], pairs_file: Path) -> dict[str, Choice]:
        labels: dict[str, Choice] = {}
        for pair, p_a in zip(pairs, self.probabilities(pairs), strict=True):
            draw = random.Random(f"{self.seed}:{pair.id}").random()
            labels[pair.id] = "a" if draw < p_a else "b"
        return labels


# name -> factory(config, gold scorer).
LABELERS: dict[str, Callable[[Any, RewardModel | None], Labeler]] = {
    "simulated": lambda config, gold: _simulated(config, gold),
    "human": lambda config, gold: _human(config, None),
    "mixed": lambda config, gold: _human(config, _simulated(config, gold)),
}


def _human(config: Any, fallback: Labeler | None) -> Labeler:
    from agents.pipeline.human import HumanLabeler  # the web stack loads only when people label

    return HumanLabeler(
        Path(config.run_dir) / "labels.sqlite",
        host=config.label_host,
        port=config.label_port,
        per_pair=config.label_per_pair,
        token=config.label_token,
        timeout=config.label_timeout,
        fallback=fallback,
    )


def _simulated(config: Any, gold: RewardModel | None) -> SimulatedLabeler:
    if gold is None:
        raise ValueError("labeler='simulated' needs a gold scorer to simulate; this task has none")
    return SimulatedLabeler(gold, config.label_temperature, seed=config.seed)


def make_labeler(config: Any, gold: RewardModel | None) -> Labeler:
    """The labeler ``config.labeler`` names."""
    return LABELERS[config.labeler](config, gold)


def write_pairs(path: str | os.PathLike[str], pairs: Sequence[Pair]) -> Path:
    from agents.pipeline.rundir import write_jsonl_atomic

    return write_jsonl_atomic(path, (p.to_json() for p in pairs))


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    from agents.pipeline.rundir import read_jsonl

    return [Pair(r["id"], r["prompt"], r["a"], r["b"]) for r in read_jsonl(path)]


def check_labels(pairs: Sequence[Pair], labels: Mapping[str, Any], labeler: object) -> dict[str, Choice]:
    """The labels of known pairs, each "a" or "b"; a ValueError naming the first bad one."""
    known = {p.id for p in pairs}
    checked: dict[str, Choice] = {}
    for pair_id, choice in labels.items():
        if pair_id not in known or choice not in ("a", "b"):
            raise ValueError(
                f"{type(labeler).__name__} returned {pair_id!r}: {choice!r}; a labeler must map ids of the "
                "round's pairs to 'a' or 'b'"
            )
        checked[pair_id] = choice
    if not checked:
        raise ValueError(
            f"{type(labeler).__name__} labelled none of the {len(pairs)} pairs; nothing to train on"
        )
    return checked


__all__ = [
    "LABELERS",
    "Labeler",
    "Pair",
    "SimulatedLabeler",
    "check_labels",
    "make_labeler",
    "read_pairs",
    "write_pairs",
]
