"""``--labeler human`` / ``mixed``: the round's pairs are served on the labelling page and people's votes come back."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

from rich.console import Console

from agents.pipeline import PipelineConfig, run_pipeline
from agents.pipeline.human import HumanLabeler
from agents.pipeline.labelers import Pair, make_labeler, write_pairs
from reward_models.labelling import LabelServer, LabelStore
from tests.agents.pipeline.tiny import TINY

PAIRS = [Pair("r1-0", "The film", " was great", " was bad"), Pair("r1-1", "The plot", " dull", " moving")]
PAIRS += [Pair("r1-2", "The cast", " fine", " okay")]


def answer(store: LabelStore, annotator: str, verdicts: dict[str, str]) -> None:
    """Answer as a person would: ``verdicts[pair id]`` is a/b/tie of the pair's own a and b."""
    while (shown := store.next_pair(annotator)) is not None:
        verdict = verdicts[shown.pair.id]
        choice = verdict if verdict == "tie" else ("left" if shown.shown_left == verdict else "right")
        store.record_answer(annotator, shown.pair.id, choice)


class AllA:
    """A stand-in simulated annotator that always prefers a."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def label(self, pairs, pairs_file):
        self.seen += [p.id for p in pairs]
        return {p.id: "a" for p in pairs}


def people_answer(db: Path, verdicts: dict[str, str], seen_page: list[int]):
    """An on_start hook: fetch the page once (it is served), then answer from another thread."""

    def start(server: LabelServer) -> None:
        with urllib.request.urlopen(server.url, timeout=30) as response:
            seen_page.append(response.status)
        threading.Thread(target=answer, args=(LabelStore(db), "ann", verdicts), daemon=True).start()

    return start


def test_people_votes_come_back_as_choices_and_ties_are_left_out(tmp_path: Path) -> None:
    pairs_file = write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    db, seen_page = tmp_path / "labels.sqlite", []
    labeler = HumanLabeler(
        db, port=0, on_start=people_answer(db, {"r1-0": "a", "r1-1": "b", "r1-2": "tie"}, seen_page)
    )
    assert labeler.label(PAIRS, pairs_file) == {"r1-0": "a", "r1-1": "b"}
    assert seen_page == [200]
    assert len(LabelStore(db).answers()) == 3  # every answer is in the run's database


def test_mixed_lets_the_simulated_annotator_label_what_people_left(tmp_path: Path) -> None:
    pairs_file = write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    db, fallback = tmp_path / "labels.sqlite", AllA()
    people = people_answer(db, {"r1-0": "b", "r1-1": "b", "r1-2": "tie"}, [])
    labels = HumanLabeler(db, port=0, fallback=fallback, on_start=people).label(PAIRS, pairs_file)
    assert labels == {"r1-0": "b", "r1-1": "b", "r1-2": "a"} and fallback.seen == ["r1-2"]


def test_the_operator_or_the_timeout_ends_a_round_with_what_is_labelled(tmp_path: Path) -> None:
    pairs_file = write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    db = tmp_path / "labels.sqlite"
    LabelStore(db).import_pairs([])  # an empty database first: nothing labelled yet
    stop = HumanLabeler(db, port=0, stop_requested=lambda: True, fallback=AllA())
    assert stop.label(PAIRS, pairs_file) == {p.id: "a" for p in PAIRS}
    assert HumanLabeler(db, port=0, timeout=0.2).label(PAIRS, pairs_file) == {}


def test_the_config_builds_the_human_labeler_on_the_run_directory(tmp_path: Path) -> None:
    config = PipelineConfig(run_dir=str(tmp_path / "run"), labeler="human", label_port=0, label_per_pair=2)
    labeler = make_labeler(config, gold=None)
    assert isinstance(labeler, HumanLabeler)
    assert labeler.db_path == tmp_path / "run" / "labels.sqlite" and labeler.per_pair == 2


def test_a_mixed_pipeline_round_trains_on_the_page_database(tmp_path: Path) -> None:
    # Nobody answers within the timeout, so the simulated annotator labels every pair: the run
    # goes through the page (pairs imported into the run's database) and on to the reward model.
    config = PipelineConfig(
        run_dir=str(tmp_path / "run"),
        labeler="mixed",
        label_port=0,
        label_timeout=0.5,
        **{**TINY, "rounds": 1},
    )
    root = run_pipeline(config, progress=False, console=Console(quiet=True))
    summary = json.loads((root / "summary.json").read_text())
    assert len(summary["rounds"]) == 1
    served = (root / "round_1" / "pairs.jsonl").read_text().splitlines()
    assert [p.id for p in LabelStore(root / "labels.sqlite").pairs()] == [json.loads(x)["id"] for x in served]
