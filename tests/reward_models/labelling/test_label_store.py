"""The SQLite store: schema, idempotent import, hand-out rules, answers, undo, progress."""

import random
import sqlite3

import pytest
from label_helpers import PAIRS

from reward_models.labelling import (
    AnswerConflictError,
    LabelPair,
    LabelStore,
    UnknownPairError,
    import_pairs,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    store = LabelStore(tmp_path / "labels.sqlite", lease_seconds=60, rng=random.Random(0), clock=clock)
    store.import_pairs(PAIRS)
    return store


def test_schema_is_created_idempotently_in_wal_mode(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path).import_pairs(PAIRS[:2])
    again = LabelStore(path)  # opening again keeps everything
    assert [p.id for p in again.pairs()] == ["p0", "p1"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="schema version '99'"):
        LabelStore(path)


def test_import_is_idempotent_and_refuses_a_changed_pair(store, tmp_path):
    assert store.import_pairs(PAIRS) == 0
    assert store.import_pairs([*PAIRS, LabelPair("new", "p", "x", "y")]) == 1
    changed = LabelPair("p1", PAIRS[1].prompt, PAIRS[1].a, " changed")
    with pytest.raises(ValueError, match="pair id 'p1' is already in .* with other texts"):
        store.import_pairs([LabelPair("other", "p", "x", "y"), changed])
    assert [p.id for p in store.pairs()] == [
        "p0",
        "p1",
        "p2",
        "p3",
        "p4",
        "new",
    ]  # nothing of the failed import
    with pytest.raises(TypeError, match="expected LabelPair"):
        store.import_pairs([{"id": "d", "prompt": "p", "a": "x", "b": "y"}])  # type: ignore[list-item]
    # the package-level helper reads a file too
    path = tmp_path / "more.jsonl"
    path.write_text('{"id": "f", "prompt": "p", "a": "x", "b": "y"}\n', encoding="utf-8")
    assert import_pairs(store.path, path) == 1 and import_pairs(store.path, path) == 0


def test_an_annotator_never_sees_a_pair_twice(store):
    seen = []
    while (assignment := store.next_pair("ann", per_pair=3)) is not None:
        assert store.next_pair("ann", per_pair=3) == assignment  # reload: the same pair, same order
        seen.append(assignment.pair.id)
        store.record_answer("ann", assignment.pair.id, random.choice(["left", "right", "tie", "skip"]))
    assert sorted(seen) == sorted(p.id for p in PAIRS)
    assert store.remaining_for("ann", per_pair=3) == 0


def test_shown_order_is_random_and_recorded(store):
    sides = set()
    for name in [f"ann{i}" for i in range(12)]:
        assignment = store.next_pair(name, per_pair=20)
        assert {assignment.left, assignment.right} == {assignment.pair.a, assignment.pair.b}
        sides.add(assignment.shown_left)
        answer = store.record_answer(name, assignment.pair.id, "left")
        assert answer.shown_left == assignment.shown_left
        assert answer.verdict == assignment.shown_left  # "left" means the response that was on the left
    assert sides == {"a", "b"}
    right = store.next_pair("zed", per_pair=20)
    answer = store.record_answer("zed", right.pair.id, "right")
    assert answer.verdict == ("b" if right.shown_left == "a" else "a")


def test_per_pair_limits_hand_outs_and_skips_do_not_count(store):
    first = store.next_pair("ann", per_pair=1)
    store.record_answer("ann", first.pair.id, "skip")  # a skip leaves the pair open for others
    assert store.next_pair("bob", per_pair=1).pair.id == first.pair.id
    store.record_answer("bob", first.pair.id, "tie")  # a tie is a judgement: the pair is complete
    assert first.pair.id not in {store.next_pair(name, 1).pair.id for name in ("cat", "dan")}
    progress = store.progress(per_pair=1)
    assert (progress.pairs, progress.answers, progress.skips, progress.complete_pairs) == (5, 1, 1, 1)
    assert progress.target == 5 and not progress.done


def test_a_leased_pair_goes_to_others_only_when_needed(store, clock):
    held = store.next_pair("ann", per_pair=1).pair.id
    others = [store.next_pair(f"b{i}", per_pair=1).pair.id for i in range(4)]
    assert held not in others and len(set(others)) == 4  # five annotators, five different pairs
    # every pair is on someone's screen: a sixth annotator waits, though pairs remain for them
    assert store.next_pair("f", per_pair=1) is None and store.remaining_for("f", per_pair=1) == 5
    clock.now += 30
    assert store.next_pair("ann", per_pair=1).pair.id == held  # showing it again renews ann's lease
    clock.now += 31  # the others' leases (61 s old) have expired, ann's (31 s) has not
    assert store.next_pair("g", per_pair=1).pair.id == others[0]
    store.record_answer("ann", held, "left")
    assert store.next_pair("ann", per_pair=1).pair.id == others[1]
    assert store.next_pair("f", per_pair=2).pair.id == held  # with 2 answers wanted, p0 needs one more


def test_record_answer_refuses_bad_requests_and_stores_nothing(store):
    shown = store.next_pair("ann")
    with pytest.raises(UnknownPairError, match="unknown pair id 'nope'"):
        store.record_answer("ann", "nope", "left")
    with pytest.raises(AnswerConflictError, match="was not shown to 'ann'"):
        store.record_answer("ann", "p4" if shown.pair.id != "p4" else "p3", "left")
    with pytest.raises(ValueError, match="choice 'better'"):
        store.record_answer("ann", shown.pair.id, "better")
    with pytest.raises(ValueError, match="annotator"):
        store.record_answer("  ", shown.pair.id, "left")
    with pytest.raises(TypeError, match="annotator is int"):
        store.next_pair(3)  # type: ignore[arg-type]
    assert store.answers() == []
    store.record_answer(" ann ", shown.pair.id, "left")  # names are stripped
    with pytest.raises(AnswerConflictError, match="already answered"):
        store.record_answer("ann", shown.pair.id, "right")
    assert [(a.annotator, a.choice) for a in store.answers()] == [("ann", "left")]


def test_undo_puts_the_last_pair_back_in_the_same_order(store):
    first = store.next_pair("ann")
    store.record_answer("ann", first.pair.id, "left")
    second = store.next_pair("ann")
    undone = store.undo_last("ann")
    assert undone is not None and (undone.pair_id, undone.choice) == (first.pair.id, "left")
    assert store.answers() == []
    assert store.next_pair("ann") == first  # the undone pair first, as it was shown
    store.record_answer("ann", first.pair.id, "right")
    assert store.next_pair("ann") == second  # then the one that was on screen
    assert store.undo_last("nobody") is None
    assert [a.choice for a in store.answers("ann")] == ["right"]


def test_a_pair_comes_back_only_while_it_still_needs_its_holder(store, clock):
    # Found by tests/reliability/test_label_store_state_machine.py: an undone skip came back although
    # the skip had let someone else take the pair, and both answered a pair that wanted one answer.
    first = store.next_pair("ann", per_pair=1)
    store.record_answer("ann", first.pair.id, "skip")
    assert store.next_pair("bob", per_pair=1).pair.id == first.pair.id  # the skip freed it for bob
    store.undo_last("ann")
    assert store.next_pair("ann", per_pair=1).pair.id != first.pair.id  # bob is answering it
    store.record_answer("bob", first.pair.id, "skip")  # bob skips too: now it is ann's again
    assert store.next_pair("ann", per_pair=1) == first
    # The same for a lease that expired while the pair was taken by someone else.
    clock.now += 61
    assert store.next_pair("cat", per_pair=1) == store.next_pair("cat", per_pair=1)
    taken = store.next_pair("cat", per_pair=1).pair.id
    assert taken == first.pair.id  # ann's lease expired: cat gets it
    assert store.next_pair("ann", per_pair=1).pair.id != first.pair.id


def test_progress_can_be_restricted_to_some_pairs(store):
    for name in ("ann", "bob"):
        while (a := store.next_pair(name, per_pair=2)) is not None:
            store.record_answer(name, a.pair.id, "left")
    assert store.progress(per_pair=2).done
    assert store.progress(per_pair=3).answers == 10 and not store.progress(per_pair=3).done
    part = store.progress(per_pair=2, pair_ids=["p0", "p1"])
    assert (part.pairs, part.answers, part.target, part.done) == (2, 4, 4, True)
    with pytest.raises(ValueError, match="per_pair=0"):
        store.progress(per_pair=0)


@pytest.mark.parametrize("kind", ["folder", "missing folder", "not a database"])
def test_a_path_that_cannot_be_a_database_is_a_clear_error(tmp_path, kind):
    # Found by tests/reliability/test_fuzz_cli.py: `textrl label --db /` ended in sqlite3's traceback.
    path = {
        "folder": tmp_path,
        "missing folder": tmp_path / "nope" / "labels.sqlite",
        "not a database": tmp_path / "notes.txt",
    }[kind]
    if kind == "not a database":
        path.write_text("plain text, not SQLite\n" * 100)
    with pytest.raises(ValueError, match=f"cannot use {path} as the labelling database"):
        LabelStore(path)
