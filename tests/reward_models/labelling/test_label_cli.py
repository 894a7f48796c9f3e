"""``textrl label`` through ``reward_models.labelling.cli.main`` and ``python -m reward_models.labelling``."""

import dataclasses
import subprocess
import sys

from label_helpers import PAIRS, REPO_ROOT, answer_as, post, start_cli_server, write_pairs

from reward_models import read_preferences
from reward_models.labelling import LabelStore
from reward_models.labelling.cli import ExportConfig, LabelConfig, main


def test_flags_come_from_the_config_dataclasses(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--pairs", "--db", "--host", "--port", "--per_pair", "--token", "--lease_seconds"):
        assert flag in text
    assert "Answers wanted per pair" in text and "--per-pair" in text
    assert main(["export", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--out" in text and "Replace --out if it exists" in text
    assert {f.name for f in dataclasses.fields(LabelConfig)} >= {
        "pairs",
        "db",
        "host",
        "port",
        "per_pair",
        "token",
    }
    assert {f.name for f in dataclasses.fields(ExportConfig)} == {"db", "out", "overwrite"}
    assert main(["--db"]) == 2  # argparse's own error, as an exit status


def test_export_writes_prefs_and_prints_the_tables(tmp_path, capsys):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.import_pairs(PAIRS)
    answer_as(store, "ann", {p.id: "a" for p in PAIRS}, per_pair=2)
    answer_as(store, "bob", {"p0": "a", "p1": "b", "p2": "tie"}, per_pair=2)
    out = tmp_path / "prefs.jsonl"
    assert main(["export", "--db", str(store.path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Cohen's kappa" in text and "ann" in text and "bob" in text and "wrote 3 preference pairs" in text
    # p1 (a against b) and p2 (a against tie) have no majority; bob skipped p3 and p4
    assert [p.chosen for p in read_preferences(out)] == [PAIRS[0].a, PAIRS[3].a, PAIRS[4].a]
    assert main(["export", "--db", str(store.path), "--out", str(out)]) == 2  # exists: refused
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", "--db", str(store.path), "--out", str(out), "--overwrite"]) == 0


def test_bad_input_is_an_error_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "p", "a": "x"}\n', encoding="utf-8")
    assert main(["--pairs", str(bad), "--db", str(tmp_path / "l.sqlite")]) == 2
    assert f"{bad}:1: missing key(s) ['b']" in capsys.readouterr().err
    assert main(["--db", str(tmp_path / "empty.sqlite"), "--port", "0"]) == 2
    assert "holds no pairs" in capsys.readouterr().err


def test_python_m_serves_and_an_exposed_server_prints_its_token(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    proc, url = start_cli_server(
        "--pairs", str(pairs), "--db", str(tmp_path / "l.sqlite"), "--host", "0.0.0.0"
    )
    try:
        assert "?token=" in url
        token = url.split("?token=")[1]
        base = url.split("?")[0].replace("0.0.0.0", "127.0.0.1")
        status, body = post(base, "/api/next", {"annotator": "ann"})
        assert status == 401 and "access token" in body["error"]
        status, body = post(base, "/api/next", {"annotator": "ann"}, headers={"X-Label-Token": token})
        assert status == 200 and body["pair"]["id"] == "p0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    done = subprocess.run(
        [sys.executable, "-m", "reward_models.labelling", "export", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--overwrite" in done.stdout
