"""Reading PAIRS.jsonl: ids, malformed lines reported as file:line, duplicates."""

import json

import pytest

from reward_models.labelling import LabelPair, read_label_pairs
from reward_models.labelling.pairs import PairsFileWarning, content_id


def test_reads_pairs_with_and_without_ids(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"id": "x1", "prompt": "the film", "a": " good", "b": " bad"},
        {"id": 7, "prompt": "", "a": "yes", "b": "no", "score": 0.3},  # int id, empty prompt, extra key
        {"prompt": "it", "a": " fun", "b": " dull"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    pairs = read_label_pairs(path)
    assert pairs == [
        LabelPair("x1", "the film", " good", " bad"),
        LabelPair("7", "", "yes", "no"),
        LabelPair(content_id("it", " fun", " dull"), "it", " fun", " dull"),
    ]
    assert len(pairs[2].id) == 16 and pairs[2].id == content_id("it", " fun", " dull")
    assert content_id("it", " fun", " dull") != content_id("it", " dull", " fun")


def test_malformed_lines_are_reported_by_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"prompt": "p", "a": "x", "b": "y"}\n'
        "{not json\n"
        '{"prompt": "p", "a": "x"}\n'
        '{"prompt": "p", "a": "", "b": "y"}\n'
        '{"id": true, "prompt": "p", "a": "x", "b": "y"}\n'
        '["a list"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError) as err:
        read_label_pairs(path)
    message = str(err.value)
    for line in (2, 3, 4, 5, 6):
        assert f"{path}:{line}:" in message
    assert f"{path}:1:" not in message
    assert "missing key(s) ['b']" in message and "'a' is empty" in message and "'id' is bool" in message
    with pytest.warns(PairsFileWarning, match="skipped 5 malformed"):
        assert len(read_label_pairs(path, on_error="skip_with_warning")) == 1


def test_duplicates_collapse_but_one_id_for_two_pairs_is_an_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    line = {"id": "a", "prompt": "p", "a": "x", "b": "y"}
    path.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n", encoding="utf-8")
    assert read_label_pairs(path) == [LabelPair("a", "p", "x", "y")]
    path.write_text(json.dumps(line) + "\n" + json.dumps({**line, "b": "z"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="id 'a' names two different pairs"):
        read_label_pairs(path)


def test_label_pair_validates_its_fields():
    with pytest.raises(TypeError, match="LabelPair.a is int"):
        LabelPair("i", "p", 3, "b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'b' is empty"):
        LabelPair("i", "p", "a", "  ")
    with pytest.raises(ValueError, match="'id'"):
        LabelPair("", "p", "a", "b")
