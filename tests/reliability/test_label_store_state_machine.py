"""A stateful Hypothesis test of the labelling store: imports, answers, undos, concurrent annotators, kills.

The machine keeps a plain-Python model of what :class:`LabelStore` promises (its module docstring:
hand-out rules, leases, undo) and drives two store objects open on the same SQLite file at once,
sometimes from two threads at the same moment. "Kill/restart" drops a store object without closing
it, abandons an uncommitted write, and opens a new object on the file. After every step the database
must agree with the model: every acknowledged answer is there until its annotator undoes it, no
annotator is shown a pair they answered, undo removes only that annotator's own last answer,
progress and ``remaining_for`` match, no pair gets more than ``per_pair`` answers (unless a lease
expired while someone still had the pair on screen), and the majority-vote tally is the model's.
"""

from __future__ import annotations

import copy
import random
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from reward_models.labelling import AnswerConflictError, Assignment, LabelPair, LabelStore, UnknownPairError
from reward_models.labelling.export import tally

ANNOTATORS = ("ann", "bob", "cy")
POOL = [LabelPair(f"p{i}", f"prompt {i}", f"first {i}", f"second {i}") for i in range(5)]
LEASE = 60.0
CHOICE = st.sampled_from(["left", "right", "tie", "skip"])
WHO = st.sampled_from(ANNOTATORS)
WHICH = st.integers(0, 1)  # which of the two store objects serves the call


class Clock:
    """The fake time every store object shares."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _verdict(choice: str, shown_left: str) -> str:
    if choice == "left":
        return shown_left
    if choice == "right":
        return "b" if shown_left == "a" else "a"
    return choice


@dataclass
class Model:
    """What the database should hold, and the store's hand-out rules over it."""

    per_pair: int
    pairs: list[str] = field(default_factory=list)  # import order
    # (pair, who) -> shown_left, in hand-out order (the store's assignment ids)
    shown: dict[tuple[str, str], str] = field(default_factory=dict)
    leased_at: dict[tuple[str, str], float] = field(default_factory=dict)
    answers: list[tuple[str, str, str, str]] = field(default_factory=list)  # (pair, who, choice, verdict)
    screen: dict[str, str | None] = field(default_factory=dict)  # what each annotator's page shows
    taken_over: set[str] = field(default_factory=set)  # pairs handed on while a stale screen showed them

    def answered(self, pair: str, who: str) -> bool:
        return any(a[0] == pair and a[1] == who for a in self.answers)

    def counted(self, pair: str) -> int:
        return sum(a[0] == pair and a[3] != "skip" for a in self.answers)

    def leased_by_others(self, pair: str, who: str, now: float) -> int:
        return sum(
            p == pair and w != who and at > now - LEASE and not self.answered(p, w)
            for (p, w), at in self.leased_at.items()
        )

    def open_for(self, pair: str, who: str, now: float) -> bool:
        """Whether ``pair`` still needs more answers than others are giving it."""
        return self.counted(pair) + self.leased_by_others(pair, who, now) < self.per_pair

    def next_pair(self, who: str, now: float) -> str | None:
        """The pair the store must hand ``who``: one on their screen (or undone) first, else the first open one."""
        for pair, w in self.shown:
            if w == who and not self.answered(pair, who) and self.open_for(pair, who, now):
                return pair
        for pair in self.pairs:
            if (pair, who) not in self.shown and self.open_for(pair, who, now):
                return pair
        return None

    def hand_out(self, who: str, pair: str | None, shown_left: str | None, now: float) -> None:
        self.screen[who] = pair
        if pair is None or shown_left is None:
            return
        stale = [
            w
            for (p, w), at in self.leased_at.items()
            if p == pair and w != who and at <= now - LEASE and self.screen.get(w) == pair
        ]
        if any(not self.answered(pair, w) for w in stale):
            self.taken_over.add(pair)  # that annotator may still answer it from their page
        self.shown.setdefault((pair, who), shown_left)
        self.leased_at[(pair, who)] = now

    def remaining_for(self, who: str) -> int:
        return sum(self.counted(p) < self.per_pair and not self.answered(p, who) for p in self.pairs)


class LabelStoreMachine(RuleBasedStateMachine):
    """Two store objects on one SQLite file against a model of the store's promises."""

    @initialize(per_pair=st.integers(1, 2), first=st.integers(1, len(POOL)))
    def open_database(self, per_pair: int, first: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="label-machine-"))
        self.path = self.dir / "labels.sqlite"
        self.clock = Clock()
        self.rngs = random.Random(0)
        self.stores = [self._open(), self._open()]
        self.model = Model(per_pair)
        self.import_pairs(0, first)

    def _open(self) -> LabelStore:
        return LabelStore(
            self.path, lease_seconds=LEASE, rng=random.Random(self.rngs.random()), clock=self.clock
        )

    def teardown(self) -> None:
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # ----- rules -----

    @rule(which=WHICH, count=st.integers(1, len(POOL)), conflict=st.booleans())
    def import_pairs(self, which: int, count: int, conflict: bool = False) -> None:
        batch = POOL[:count]
        new = [pair.id for pair in batch if pair.id not in self.model.pairs]
        if conflict and self.model.pairs:
            # A stored id with other texts: the whole import is refused (the invariants see no new pair).
            changed = LabelPair(self.model.pairs[-1], "another prompt", "x", "y")
            with pytest.raises(ValueError, match="with other texts|names two different pairs"):
                self.stores[which].import_pairs([*batch, changed])
            return
        assert self.stores[which].import_pairs(batch) == len(new)
        self.model.pairs += new

    @rule(which=WHICH, who=WHO)
    def next_pair(self, which: int, who: str) -> None:
        got = self.stores[which].next_pair(who, self.model.per_pair)
        self._check_hand_out(who, got)

    def _check_hand_out(self, who: str, got: Assignment | None, model: Model | None = None) -> None:
        model = model or self.model
        now = self.clock.now
        expected = model.next_pair(who, now)
        if got is None:
            assert expected is None, f"{who} was handed nothing, the rules give {expected}"
            model.hand_out(who, None, None, now)
            return
        pair = got.pair.id
        assert pair == expected, f"{who} was handed {pair}, the rules give {expected}"
        assert not model.answered(pair, who), f"{who} was shown {pair} again after answering it"
        if (pair, who) in model.shown:  # the pair on screen, or the undone one: the same order
            assert got.shown_left == model.shown[(pair, who)]
        assert got.pair == POOL[int(pair[1:])]
        model.hand_out(who, pair, got.shown_left, now)

    @rule(which=WHICH, first=WHO, second=WHO)
    def two_annotators_ask_at_once(self, which: int, first: str, second: str) -> None:
        if first == second:
            return
        results: dict[str, Assignment | None] = {}
        barrier = threading.Barrier(2)

        def ask(store: LabelStore, who: str) -> None:
            barrier.wait()
            results[who] = store.next_pair(who, self.model.per_pair)

        threads = [
            threading.Thread(target=ask, args=(self.stores[which], first)),
            threading.Thread(target=ask, args=(self.stores[1 - which], second)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Either order is fine; the store must match one of them (transactions serialise).
        misfits = []
        for order in ((first, second), (second, first)):
            trial = copy.deepcopy(self.model)
            try:
                for who in order:
                    self._check_hand_out(who, results[who], trial)
            except AssertionError as err:
                misfits.append(f"{order}: {err}")
                continue
            self.model = trial
            return
        raise AssertionError(f"concurrent hand-outs {results} fit neither order: {misfits}")

    @rule(which=WHICH, who=WHO, choice=CHOICE)
    def answer(self, which: int, who: str, choice: str) -> None:
        """What the page does: answer the pair on screen (asking for one first if none is), then ask again."""
        if self.model.screen.get(who) is None:
            self.next_pair(which, who)
        pair = self.model.screen.get(who)
        if pair is None:
            return
        saved = self.stores[which].record_answer(who, pair, choice)
        shown_left = self.model.shown[(pair, who)]
        assert (saved.pair_id, saved.annotator, saved.choice) == (pair, who, choice)
        assert saved.shown_left == shown_left and saved.verdict == _verdict(choice, shown_left)
        self.model.answers.append((pair, who, choice, saved.verdict))
        self.next_pair(which, who)

    @rule(which=WHICH, who=WHO, index=st.integers(0, len(POOL) - 1), choice=CHOICE)
    def refused_answer_stores_nothing(self, which: int, who: str, index: int, choice: str) -> None:
        """A stale or forged request: an unknown pair, one never shown, or one already answered."""
        pair = POOL[index].id
        mine = [a[0] for a in self.model.answers if a[1] == who]
        if pair not in self.model.pairs:
            with pytest.raises(UnknownPairError):
                self.stores[which].record_answer(who, pair, choice)
        elif (pair, who) not in self.model.shown:
            with pytest.raises(AnswerConflictError, match="not shown"):
                self.stores[which].record_answer(who, pair, choice)
        elif mine:  # a double click on the last answer
            with pytest.raises(AnswerConflictError, match="already answered"):
                self.stores[which].record_answer(who, mine[-1], choice)

    @rule(which=WHICH, who=WHO)
    def undo(self, which: int, who: str) -> None:
        undone = self.stores[which].undo_last(who)
        mine = [i for i, a in enumerate(self.model.answers) if a[1] == who]
        if not mine:
            assert undone is None
            return
        pair, _, choice, verdict = self.model.answers.pop(mine[-1])
        assert undone is not None and (undone.pair_id, undone.annotator, undone.choice) == (pair, who, choice)
        assert undone.verdict == verdict
        self.model.leased_at[(pair, who)] = self.clock.now  # back on their screen, lease renewed
        self.next_pair(which, who)  # the page asks for the pair to show now

    @rule(seconds=st.sampled_from([1.0, LEASE / 2, LEASE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(which=WHICH, who=WHO, pair=st.sampled_from([p.id for p in POOL]))
    def kill_and_restart(self, which: int, who: str, pair: str) -> None:
        # A server killed mid-answer: its transaction began and wrote, but never committed.
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        if pair in self.model.pairs and not self.model.answered(pair, who):
            conn.execute(
                "INSERT INTO answers (pair_id, annotator, shown_left, choice, verdict, answered_at)"
                " VALUES (?, ?, 'a', 'left', 'a', 0)",
                (pair, who),
            )
        conn.close()  # what the OS does to a killed process's file: no commit, so nothing of it stays
        # The store object is dropped without any closing; a new one opens the same file.
        self.stores[which] = self._open()

    # ----- invariants -----

    @invariant()
    def database_matches_the_model(self) -> None:
        store = self.stores[0]
        assert [p.id for p in store.pairs()] == self.model.pairs
        stored = [(a.pair_id, a.annotator, a.choice, a.verdict) for a in store.answers()]
        assert stored == self.model.answers  # acknowledged answers, in commit order, and nothing else
        for who in ANNOTATORS:
            mine = [(a.pair_id, a.choice) for a in self.stores[1].answers(who)]
            assert mine == [(a[0], a[2]) for a in self.model.answers if a[1] == who]

    @invariant()
    def progress_and_remaining_match(self) -> None:
        n = self.model.per_pair
        progress = self.stores[1].progress(n)
        counts = {p: self.model.counted(p) for p in self.model.pairs}
        assert progress.pairs == len(self.model.pairs)
        assert progress.answers == sum(min(c, n) for c in counts.values())
        assert progress.skips == sum(a[3] == "skip" for a in self.model.answers)
        assert progress.complete_pairs == sum(c >= n for c in counts.values())
        for who in ANNOTATORS:
            assert self.stores[0].remaining_for(who, n) == self.model.remaining_for(who)

    @invariant()
    def no_pair_gets_more_answers_than_wanted(self) -> None:
        for pair in self.model.pairs:
            if pair not in self.model.taken_over:
                assert self.model.counted(pair) <= self.model.per_pair, f"{pair} over-answered"

    @invariant()
    def tally_is_the_majority_vote(self) -> None:
        if not hasattr(self, "path"):
            return
        summary = tally(self.path)
        preferences, tied, skipped, unanswered = [], 0, 0, 0
        for pair in POOL:
            if pair.id not in self.model.pairs:
                continue
            mine = [a for a in self.model.answers if a[0] == pair.id]
            votes = Counter(a[3] for a in mine if a[3] != "skip").most_common()
            if not votes:
                skipped += bool(mine)
                unanswered += not mine
            elif (len(votes) > 1 and votes[0][1] == votes[1][1]) or votes[0][0] == "tie":
                tied += 1
            else:
                won = votes[0][0] == "a"
                preferences.append((pair.prompt, *((pair.a, pair.b) if won else (pair.b, pair.a))))
        # Pairs are counted in import order, which is POOL order here (imports take POOL prefixes).
        got = [(p.prompt, p.chosen, p.rejected) for p in summary.preferences]
        assert (got, summary.tied, summary.skipped, summary.unanswered) == (
            preferences,
            tied,
            skipped,
            unanswered,
        )
        per_person = {row.annotator: (row.answers, row.skips) for row in summary.annotators}
        expected = {
            who: (
                sum(a[1] == who for a in self.model.answers),
                sum(a[1] == who and a[2] == "skip" for a in self.model.answers),
            )
            for who in ANNOTATORS
            if any(a[1] == who for a in self.model.answers)
        }
        assert per_person == expected


LabelStoreMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLabelStoreStateMachine = LabelStoreMachine.TestCase
