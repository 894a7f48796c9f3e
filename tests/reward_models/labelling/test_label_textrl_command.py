"""``textrl label`` (agents.cli) reaches the labelling package's serve and export."""

from label_helpers import PAIRS, answer_as

from agents.cli import main
from reward_models import read_preferences
from reward_models.labelling import LabelStore


def test_textrl_label_export_writes_the_voted_preferences(tmp_path, capsys):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.import_pairs(PAIRS)
    answer_as(store, "ann", {p.id: "a" for p in PAIRS}, per_pair=1)
    out = tmp_path / "prefs.jsonl"
    assert main(["label", "export", "--db", str(store.path), "--out", str(out)]) == 0
    assert f"wrote {len(PAIRS)} preference pairs" in capsys.readouterr().out
    assert [p.chosen for p in read_preferences(out)] == [p.a for p in PAIRS]


def test_textrl_label_names_the_missing_flag_and_the_foreign_one(tmp_path, capsys):
    assert main(["label", "export", "--db", str(tmp_path / "l.sqlite")]) == 2
    assert "`textrl label export` needs --out" in capsys.readouterr().err
    assert main(["label", "--db", str(tmp_path / "l.sqlite"), "--out", "x.jsonl"]) == 2
    assert "'out' is not a setting of LabelConfig" in capsys.readouterr().err
    assert (
        main(["label", "--pairs", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "l.sqlite")]) == 2
    )
    assert "missing.jsonl" in capsys.readouterr().err
