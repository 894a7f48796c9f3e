"""A real served instance: concurrent annotators lose nothing; SIGKILL loses no acknowledged answer."""

import os
import signal
import threading

from label_helpers import post, start_cli_server, write_pairs

from reward_models.labelling import LabelPair, LabelServer, LabelStore

MANY = [LabelPair(f"m{i:02d}", f"prompt {i}", f"first {i}", f"second {i}") for i in range(30)]


def _label_everything(base: str, name: str, barrier: threading.Barrier, acked: list, errors: list) -> None:
    barrier.wait()
    while True:
        status, shown = post(base, "/api/next", {"annotator": name})
        if status != 200:
            errors.append((name, status, shown))
            return
        if shown["pair"] is None:
            return
        pair_id = shown["pair"]["id"]
        status, body = post(base, "/api/answer", {"annotator": name, "pair_id": pair_id, "choice": "left"})
        if status != 200:
            errors.append((name, status, body))
            return
        acked.append((name, pair_id))


def _run_annotators(base: str, names: list[str]) -> tuple[list, list]:
    barrier = threading.Barrier(len(names))
    acked: list = []
    errors: list = []
    threads = [
        threading.Thread(target=_label_everything, args=(base, n, barrier, acked, errors)) for n in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return acked, errors


def test_annotators_posting_at_the_same_time_lose_nothing(tmp_path):
    pairs_path = write_pairs(tmp_path / "pairs.jsonl", MANY)
    with LabelServer(pairs_path, tmp_path / "labels.sqlite", port=0, per_pair=2) as server:
        acked, errors = _run_annotators(server.url, ["ann", "bob"])
        assert errors == []
        progress = server.progress()
    stored = [(a.annotator, a.pair_id) for a in LabelStore(tmp_path / "labels.sqlite").answers()]
    assert sorted(stored) == sorted(acked) and len(stored) == 60  # both labelled all 30, nothing lost
    assert len(set(stored)) == 60  # and nobody saw a pair twice
    assert progress.done and progress.answers == progress.target == 60


def test_concurrent_annotators_share_the_work_when_one_answer_per_pair_is_wanted(tmp_path):
    pairs_path = write_pairs(tmp_path / "pairs.jsonl", MANY)
    with LabelServer(pairs_path, tmp_path / "labels.sqlite", port=0, per_pair=1) as server:
        acked, errors = _run_annotators(server.url, ["ann", "bob", "cat"])
    assert errors == []
    by_pair = [pair_id for _, pair_id in acked]
    assert sorted(by_pair) == sorted(p.id for p in MANY)  # every pair answered exactly once
    assert len(LabelStore(tmp_path / "labels.sqlite").answers()) == 30


def test_sigkill_loses_no_acknowledged_answer_and_restart_resumes(tmp_path):
    pairs_path = write_pairs(tmp_path / "pairs.jsonl", MANY[:10])
    db = tmp_path / "labels.sqlite"
    proc, url = start_cli_server("--pairs", str(pairs_path), "--db", str(db))
    acked = []
    try:
        for _ in range(7):
            _, shown = post(url, "/api/next", {"annotator": "ann"})
            status, _ = post(
                url, "/api/answer", {"annotator": "ann", "pair_id": shown["pair"]["id"], "choice": "tie"}
            )
            assert status == 200
            acked.append(shown["pair"]["id"])
        _, on_screen = post(url, "/api/next", {"annotator": "ann"})  # the 8th pair, shown, not answered
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert [a.pair_id for a in LabelStore(db).answers()] == acked  # all 7, in order

    proc, url = start_cli_server("--db", str(db))  # resume from the database alone
    try:
        _, shown = post(url, "/api/next", {"annotator": "ann"})
        assert shown["pair"] == on_screen["pair"]  # the pair on screen comes back, in the same order
        assert shown["you"] == {"answered": 7, "remaining": 3}
        seen = set(acked)
        while shown["pair"] is not None:
            assert shown["pair"]["id"] not in seen
            seen.add(shown["pair"]["id"])
            post(url, "/api/answer", {"annotator": "ann", "pair_id": shown["pair"]["id"], "choice": "skip"})
            _, shown = post(url, "/api/next", {"annotator": "ann"})
        assert seen == {p.id for p in MANY[:10]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
