"""Inter-annotator agreement: Cohen's kappa (two annotators) and Fleiss' kappa (any number).

Kappa is agreement corrected for chance: ``(p_o - p_e) / (1 - p_e)``, 1 for perfect agreement, 0 for
what independent guessing with the same label frequencies gives, negative below that. It is
undefined (None here) when chance agreement is already certain, e.g. every label the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def cohen_kappa(labels: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two annotators over the items both labelled.

    Args:
        labels: one ``(first annotator's label, second annotator's label)`` per item.

    Returns:
        Kappa, or None when there are no items or chance agreement is 1.
    """
    if not labels:
        return None
    n = len(labels)
    observed = sum(x == y for x, y in labels) / n
    first, second = Counter(x for x, _ in labels), Counter(y for _, y in labels)
    chance = sum(first[k] * second[k] for k in first) / (n * n)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def fleiss_kappa(counts: Sequence[Mapping[str, int]]) -> float | None:
    """Fleiss' kappa over items labelled by two or more annotators each.

    Fleiss (1971) assumes the same number of ratings per item; here each item's agreement uses its
    own number of ratings ``n_i`` and the category shares pool all ratings, which is Fleiss' formula
    whenever the ``n_i`` are equal. Items with fewer than two ratings carry no agreement and are dropped.

    Args:
        counts: per item, how many annotators gave each label (``{"a": 2, "tie": 1}``).

    Returns:
        Kappa, or None when no item has two ratings or chance agreement is 1.
    """
    items = [{k: v for k, v in item.items() if v} for item in counts]
    items = [item for item in items if sum(item.values()) >= 2]
    if not items:
        return None
    per_item = []
    totals: Counter[str] = Counter()
    for item in items:
        n_i = sum(item.values())
        per_item.append((sum(v * v for v in item.values()) - n_i) / (n_i * (n_i - 1)))
        totals.update(item)
    observed = sum(per_item) / len(per_item)
    all_ratings = sum(totals.values())
    chance = sum((v / all_ratings) ** 2 for v in totals.values())
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


@dataclass(frozen=True)
class Agreement:
    """Agreement among annotators on the items more than one of them answered (skips left out).

    Attributes:
        method: ``"cohen"`` (exactly two annotators), ``"fleiss"`` (three or more) or ``None`` (fewer).
        kappa: the statistic, None when undefined (see the module docstring) or no item was shared.
        observed: the raw share of agreeing pairs of answers, None without shared items.
        items: how many items entered the statistic.
    """

    method: str | None
    kappa: float | None
    observed: float | None
    items: int


def agreement(votes: Mapping[str, Mapping[str, str]]) -> Agreement:
    """Cohen's kappa for two annotators, Fleiss' for more.

    Args:
        votes: per item, ``{annotator: label}`` (labels such as ``"a"``, ``"b"``, ``"tie"``).
    """
    annotators = sorted({who for item in votes.values() for who in item})
    if len(annotators) < 2:
        return Agreement(None, None, None, 0)
    shared = [item for item in votes.values() if len(item) >= 2]
    if len(annotators) == 2:
        first, second = annotators
        labels = [(item[first], item[second]) for item in shared]
        observed = sum(x == y for x, y in labels) / len(labels) if labels else None
        return Agreement("cohen", cohen_kappa(labels), observed, len(labels))
    counts = [Counter(item.values()) for item in shared]
    agreeing = [
        (sum(v * v for v in c.values()) - sum(c.values())) / (sum(c.values()) * (sum(c.values()) - 1))
        for c in counts
    ]
    observed = sum(agreeing) / len(agreeing) if agreeing else None
    return Agreement("fleiss", fleiss_kappa(counts), observed, len(counts))
