"""From answers to preference pairs: majority vote per pair, counts per annotator, agreement.

A pair is exported as ``{"prompt", "chosen", "rejected"}`` when one response has strictly more votes
than the other response and than "tie". Pairs whose top vote is "tie" or shared by two options are
left out and counted as tied; pairs with only skips, or no answers, are left out and counted too.
The file is what :func:`reward_models.read_preferences` (and so ``textrl rm``) reads.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reward_models.labelling.agreement import Agreement, agreement
from reward_models.labelling.records import Answer
from reward_models.labelling.store import LabelStore
from reward_models.preferences import PreferencePair, write_preferences


@dataclass(frozen=True)
class AnnotatorCounts:
    """What one annotator answered.

    Attributes:
        annotator: the name they entered.
        answers: all their answers.
        preferences: answers preferring one response.
        ties: "tie" answers.
        skips: "skip" answers.
        left: preferences for the response shown on the left (about half, unless position biases them).
    """

    annotator: str
    answers: int
    preferences: int
    ties: int
    skips: int
    left: int


@dataclass(frozen=True)
class LabelSummary:
    """The outcome of the vote.

    Attributes:
        pairs: pairs counted.
        preferences: the majority-voted pairs, in import order.
        tied: pairs left out because "tie" won or the top vote was shared.
        skipped: pairs left out because every answer was a skip.
        unanswered: pairs without any answer.
        annotators: per-annotator counts, by name.
        agreement: inter-annotator agreement (Cohen's or Fleiss' kappa).
    """

    pairs: int
    preferences: list[PreferencePair]
    tied: int
    skipped: int
    unanswered: int
    annotators: list[AnnotatorCounts]
    agreement: Agreement


def _open(db_path: str | os.PathLike[str]) -> LabelStore:
    if not Path(db_path).is_file():
        raise FileNotFoundError(
            f"no labelling database at {os.fspath(db_path)}; pass the --db that `textrl label` used"
        )
    return LabelStore(db_path)


def _majority(votes: Counter[str]) -> str | None:
    """``"a"`` or ``"b"`` when it has strictly the most votes (ties counted as an option), else None."""
    ranked = votes.most_common()
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0] if ranked[0][0] in ("a", "b") else None


def tally(db_path: str | os.PathLike[str], pair_ids: Sequence[str] | None = None) -> LabelSummary:
    """Vote on every pair of the database (or only ``pair_ids``) and count who answered what.

    Raises:
        FileNotFoundError: no database at ``db_path``.
    """
    store = _open(db_path)
    pairs = store.pairs()
    if pair_ids is not None:
        wanted = set(pair_ids)
        pairs = [pair for pair in pairs if pair.id in wanted]
    kept = {pair.id for pair in pairs}
    answers = [answer for answer in store.answers() if answer.pair_id in kept]
    verdicts: dict[str, dict[str, str]] = {pair.id: {} for pair in pairs}  # pair -> annotator -> a/b/tie
    skipped_by: Counter[str] = Counter()
    for answer in answers:
        if answer.verdict == "skip":
            skipped_by[answer.pair_id] += 1
        else:
            verdicts[answer.pair_id][answer.annotator] = answer.verdict
    preferences, tied, skipped, unanswered = [], 0, 0, 0
    for pair in pairs:
        votes = Counter(verdicts[pair.id].values())
        if not votes:
            skipped += bool(skipped_by[pair.id])
            unanswered += not skipped_by[pair.id]
            continue
        winner = _majority(votes)
        if winner is None:
            tied += 1
            continue
        chosen, rejected = (pair.a, pair.b) if winner == "a" else (pair.b, pair.a)
        preferences.append(PreferencePair(pair.prompt, chosen, rejected))
    return LabelSummary(
        len(pairs), preferences, tied, skipped, unanswered, _per_annotator(answers), agreement(verdicts)
    )


def _per_annotator(answers: Sequence[Answer]) -> list[AnnotatorCounts]:
    names = sorted({answer.annotator for answer in answers})
    rows = []
    for name in names:
        mine = [answer for answer in answers if answer.annotator == name]
        rows.append(
            AnnotatorCounts(
                annotator=name,
                answers=len(mine),
                preferences=sum(answer.choice in ("left", "right") for answer in mine),
                ties=sum(answer.choice == "tie" for answer in mine),
                skips=sum(answer.choice == "skip" for answer in mine),
                left=sum(answer.choice == "left" for answer in mine),
            )
        )
    return rows


def collect_preferences(
    db_path: str | os.PathLike[str], pair_ids: Sequence[str] | None = None
) -> list[PreferencePair]:
    """The majority-voted preference pairs of the database (or of ``pair_ids``), in import order.

    Raises:
        FileNotFoundError: no database at ``db_path``.
    """
    return tally(db_path, pair_ids).preferences


def export_preferences(
    db_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    overwrite: bool = False,
    pair_ids: Sequence[str] | None = None,
) -> LabelSummary:
    """Write the majority-voted pairs to ``out`` as preference JSONL (atomically) and return the tally.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        FileNotFoundError: no database at ``db_path``.
    """
    target = Path(out)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose another --out, or pass --overwrite to replace it")
    summary = tally(db_path, pair_ids)
    write_preferences(target, summary.preferences)  # temp file + fsync + os.replace
    return summary


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def print_summary(summary: LabelSummary, console: Console | None = None) -> None:
    """Print the vote counts, one row per annotator, and the agreement as rich tables."""
    console = console or Console()
    votes = Table(title="Pairs")
    for column in ("pairs", "exported", "tied", "only skipped", "unanswered"):
        votes.add_column(column, justify="right")
    votes.add_row(
        *map(
            str, (summary.pairs, len(summary.preferences), summary.tied, summary.skipped, summary.unanswered)
        )
    )
    console.print(votes)
    people = Table(title="Annotators")
    people.add_column("annotator")
    for column in ("answers", "preferences", "ties", "skips", "left chosen"):
        people.add_column(column, justify="right")
    for row in summary.annotators:
        people.add_row(
            row.annotator, str(row.answers), str(row.preferences), str(row.ties), str(row.skips),
            _share(row.left, row.preferences),
        )  # fmt: skip
    console.print(people)
    agree = summary.agreement
    names = {"cohen": "Cohen's kappa", "fleiss": "Fleiss' kappa", None: "kappa"}
    table = Table(title="Agreement")
    for column in ("statistic", "value", "observed agreement", "shared pairs"):
        table.add_column(column, justify="right")
    if agree.method is None:
        value = "n/a (fewer than 2 annotators)"
    elif agree.kappa is None:
        value = "n/a (no shared pairs)" if not agree.items else "n/a (every answer the same)"
    else:
        value = f"{agree.kappa:.3f}"
    observed = "-" if agree.observed is None else f"{agree.observed:.0%}"
    table.add_row(names[agree.method], value, observed, str(agree.items))
    console.print(table)
