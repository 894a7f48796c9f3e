"""Majority vote, agreement statistics (known answers), the export file, and training on it."""

import io
import math

import pytest
from label_helpers import PAIRS, answer_as
from rich.console import Console

from reward_models import read_preferences, train_reward_model
from reward_models.labelling import (
    LabelPair,
    LabelStore,
    cohen_kappa,
    collect_preferences,
    export_preferences,
    fleiss_kappa,
    print_summary,
    tally,
)
from reward_models.labelling.agreement import agreement


def test_cohen_kappa_known_answer():
    # Wikipedia's example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> p_o 0.7, p_e 0.5, kappa 0.4
    labels = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(labels) == pytest.approx(0.4)
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)
    assert cohen_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)
    assert cohen_kappa([("a", "a")] * 3) is None  # chance agreement is 1: undefined
    assert cohen_kappa([]) is None


def test_fleiss_kappa_known_answer():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    counts = [{str(j): n for j, n in enumerate(row)} for row in table]
    assert fleiss_kappa(counts) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa([{"a": 3}, {"b": 3}]) == pytest.approx(1.0)
    assert fleiss_kappa([{"a": 1}]) is None  # no item with two ratings


def test_agreement_picks_cohen_for_two_and_fleiss_for_more():
    two = agreement({"p": {"x": "a", "y": "a"}, "q": {"x": "a", "y": "b"}, "r": {"x": "b"}})
    assert (two.method, two.items, two.observed) == ("cohen", 2, 0.5)
    assert two.kappa == pytest.approx(0.0)  # p_o 0.5 and p_e (2 * 1) / 4 = 0.5
    three = agreement({"p": {"x": "a", "y": "a", "z": "a"}, "q": {"x": "b", "y": "b", "z": "b"}})
    assert (three.method, three.kappa, three.items) == ("fleiss", pytest.approx(1.0), 2)
    assert agreement({"p": {"x": "a"}}).method is None


@pytest.fixture
def voted(tmp_path):
    """Three annotators on five pairs: p0 a wins 2-1, p1 b wins 3-0, p2 a/b/tie split, p3 tie wins, p4 skipped."""
    store = LabelStore(tmp_path / "labels.sqlite")
    store.import_pairs([*PAIRS, LabelPair("p5", "never", "x", "y")])
    answer_as(store, "ann", {"p0": "a", "p1": "b", "p2": "a", "p3": "tie", "p5": "a"}, per_pair=3)
    answer_as(store, "bob", {"p0": "a", "p1": "b", "p2": "b", "p3": "tie", "p5": "a"}, per_pair=3)
    answer_as(store, "cat", {"p0": "b", "p1": "b", "p2": "tie", "p3": "a"}, per_pair=3)
    store.undo_last("ann")  # ann takes back her answer to the last pair she saw
    return store


def test_majority_vote_leaves_out_ties_and_skips_and_counts_them(voted):
    ids = [a.pair_id for a in voted.answers("ann")]
    summary = tally(voted.path, pair_ids=[p.id for p in PAIRS])  # p5 is not part of this round
    p0, p1 = PAIRS[0], PAIRS[1]
    assert [(p.prompt, p.chosen, p.rejected) for p in summary.preferences] == [
        (p0.prompt, p0.a, p0.b),
        (p1.prompt, p1.b, p1.a),
    ]
    assert (summary.pairs, summary.tied, summary.skipped, summary.unanswered) == (5, 2, 1, 0)
    counts = {row.annotator: row for row in summary.annotators}
    assert set(counts) == {"ann", "bob", "cat"}
    cat = counts["cat"]
    assert (cat.answers, cat.preferences, cat.ties, cat.skips) == (5, 3, 1, 1)  # p4 skipped
    assert counts["bob"].answers == 5 and counts["bob"].skips == 1
    assert counts["ann"].answers == len(ids) == 5 and "p5" not in ids  # her p5 answer was undone
    assert summary.agreement.method == "fleiss" and summary.agreement.items == 4
    assert len(collect_preferences(voted.path)) == 3  # all pairs: p5 (a, 1 vote after the undo) too


def test_export_writes_preference_jsonl_atomically_and_refuses_to_overwrite(voted, tmp_path):
    out = tmp_path / "prefs.jsonl"
    summary = export_preferences(voted.path, out)
    assert read_preferences(out) == summary.preferences and len(summary.preferences) == 3
    out.write_text("mine\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_preferences(voted.path, out)
    assert out.read_text(encoding="utf-8") == "mine\n"
    export_preferences(voted.path, out, overwrite=True)
    assert len(read_preferences(out)) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(FileNotFoundError, match="no labelling database"):
        export_preferences(tmp_path / "missing.sqlite", tmp_path / "x.jsonl")


def test_summary_prints_counts_and_kappa(voted):
    console = Console(file=io.StringIO(), width=120)
    print_summary(tally(voted.path), console)
    text = console.file.getvalue()
    assert "Fleiss' kappa" in text and "Annotators" in text and "cat" in text
    two = LabelStore(voted.path.parent / "two.sqlite")
    two.import_pairs(PAIRS)
    answer_as(two, "x", {p.id: "a" for p in PAIRS}, per_pair=2)
    answer_as(two, "y", {p.id: "a" for p in PAIRS[:4]} | {"p4": "b"}, per_pair=2)
    console = Console(file=io.StringIO(), width=120)
    print_summary(tally(two.path), console)
    assert "Cohen's kappa" in console.file.getvalue()


POSITIVE = ["good", "great", "wonderful", "love", "happy", "fun", "excellent", "nice", "brilliant"]
NEGATIVE = ["bad", "terrible", "awful", "hate", "sad", "boring", "ugly", "poor", "dull"]


def test_exported_labels_train_a_reward_model(tmp_path, tokenizer, make_reward_model):
    """Two annotators prefer the positive response, a third answers at random; the model learns it."""
    pairs = []
    for i, (good, bad) in enumerate((g, b) for g in POSITIVE for b in NEGATIVE[:4]):
        prompt = ["the film", "this movie was", "the story is"][i % 3]
        a, b = (f" {good}", f" {bad}") if i % 2 else (f" {bad}", f" {good}")
        pairs.append(LabelPair(f"q{i}", prompt, a, b))
    store = LabelStore(tmp_path / "labels.sqlite")
    store.import_pairs(pairs)
    better = {p.id: ("a" if p.a.strip() in POSITIVE else "b") for p in pairs}
    worse = {k: "b" if v == "a" else "a" for k, v in better.items()}
    answer_as(store, "ann", better, per_pair=3)
    answer_as(store, "bob", better, per_pair=3)
    answer_as(store, "cat", {k: (better if i % 3 else worse)[k] for i, k in enumerate(better)}, per_pair=3)
    out = tmp_path / "prefs.jsonl"
    summary = export_preferences(store.path, out)
    assert len(summary.preferences) == len(pairs) == 36
    result = train_reward_model(
        make_reward_model(seed=1), tokenizer, out, eval_fraction=0.0, epochs=12, batch_size=12,
        learning_rate=3e-3, seed=1, progress=False,
    )  # fmt: skip
    first, last = result.train_loss[:3], result.train_loss[-3:]
    assert sum(last) / 3 < 0.5 * sum(first) / 3 and sum(last) / 3 < math.log(2)
    reward = result.reward_model()
    scores = reward(["the film"] * 2, [" wonderful", " awful"]).tolist()
    assert scores[0] > scores[1]


def test_textrl_label_export_output_trains_with_textrl_rm(tmp_path, capsys):
    """Pairs labelled through the page's API, exported by `textrl label export`, trained by `textrl rm`."""
    from agents.cli import main as textrl
    from reward_models.labelling.cli import main as label
    from reward_models.labelling.server import create_app
    from textrl_env.default_model import SENTIMENT_PROMPTS

    good, bad = " great fun.", " dull and bad."
    pairs = [  # the better response is "a" on even lines and "b" on odd ones
        LabelPair(f"s{i}", p, *((good, bad) if i % 2 == 0 else (bad, good)))
        for i, p in enumerate(SENTIMENT_PROMPTS[:20])
    ]
    store = LabelStore(tmp_path / "labels.sqlite")
    store.import_pairs(pairs)
    client = create_app(store, per_pair=2).test_client()
    for name in ("ann", "bob"):
        while (shown := client.post("/api/next", json={"annotator": name}).get_json()["pair"]) is not None:
            choice = "left" if shown["left"] == good else "right"
            body = {"annotator": name, "pair_id": shown["id"], "choice": choice}
            assert client.post("/api/answer", json=body).status_code == 200
    prefs = tmp_path / "prefs.jsonl"
    assert label(["export", "--db", str(store.path), "--out", str(prefs)]) == 0
    assert {(p.chosen, p.rejected) for p in read_preferences(prefs)} == {(good, bad)}
    capsys.readouterr()
    argv = ["rm", str(prefs), "--epochs", "2", "--batch_size", "8", "--learning_rate", "1e-3"]
    assert textrl([*argv, "--eval_fraction", "0.2", "--no_progress", "--out", str(tmp_path / "rm")]) == 0
    assert "held-out accuracy 1.000" in capsys.readouterr().out  # the people's preference was learned
