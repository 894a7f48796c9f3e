"""Preference JSONL: malformed lines reported with file:line, atomic writes and appends."""

import json
import os
import warnings

import pytest

from reward_models.preferences import (
    PreferenceFileWarning,
    PreferencePair,
    append_preferences,
    read_preferences,
    write_preferences,
)

PAIRS = [
    PreferencePair("The movie", " was great", " was awful"),
    PreferencePair("", "yes ✓ «quoted»\nsecond line", "no"),
]


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "prefs.jsonl"
    write_preferences(path, PAIRS)
    assert read_preferences(path) == PAIRS
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2  # newlines inside strings are escaped
    assert [p.name for p in tmp_path.iterdir()] == ["prefs.jsonl"]  # no temp file left behind


def test_append_keeps_the_existing_bytes(tmp_path):
    path = tmp_path / "prefs.jsonl"
    original = b'{"prompt": "a", "chosen": "b", "rejected": "c", "labeller": "ann"}'  # no final newline
    path.write_bytes(original)
    append_preferences(path, PAIRS[:1])
    append_preferences(path, PAIRS[1:])
    data = path.read_bytes()
    assert data.startswith(original + b"\n")
    assert read_preferences(path) == [PreferencePair("a", "b", "c"), *PAIRS]


def test_append_creates_a_missing_file_with_ordinary_permissions(tmp_path):
    path = tmp_path / "new.jsonl"
    append_preferences(path, PAIRS)
    assert read_preferences(path) == PAIRS
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_append_keeps_permissions(tmp_path):
    path = tmp_path / "prefs.jsonl"
    write_preferences(path, PAIRS)
    os.chmod(path, 0o640)
    append_preferences(path, PAIRS)
    assert path.stat().st_mode & 0o777 == 0o640


def test_failed_append_leaves_the_original_intact(tmp_path, monkeypatch):
    path = tmp_path / "prefs.jsonl"
    write_preferences(path, PAIRS)
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk unplugged")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk unplugged"):
        append_preferences(path, [PreferencePair("p", "c", "r")] * 100)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["prefs.jsonl"]  # the temp file was removed


def test_interrupted_write_leaves_the_original_intact(tmp_path, monkeypatch):
    path = tmp_path / "prefs.jsonl"
    write_preferences(path, PAIRS)
    before = path.read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_preferences(path, PAIRS[:1])
    assert path.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 1


def _write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


BAD_FILE = [
    b'{"prompt": "p", "chosen": "good", "rejected": "bad"}',  # 1 ok
    b'{"prompt": "p", "chosen": "good"',  # 2 invalid JSON
    b"",  # 3 blank: ignored
    b'{"prompt": "p", "chosen": "good"}',  # 4 missing rejected
    b'{"prompt": "p", "chosen": 3, "rejected": "bad"}',  # 5 non-string
    b'{"prompt": "p", "chosen": "   ", "rejected": "bad"}',  # 6 empty chosen
    b'["p", "good", "bad"]',  # 7 not an object
    b'{"prompt": "p", "chosen": "\xff", "rejected": "bad"}',  # 8 not UTF-8
    b'{"prompt": "", "chosen": "fine", "rejected": "also fine", "extra": 1}',  # 9 ok
]


def test_malformed_lines_are_refused_with_file_and_line(tmp_path):
    path = tmp_path / "prefs.jsonl"
    _write_lines(path, BAD_FILE)
    with pytest.raises(ValueError) as info:
        read_preferences(path)
    message = str(info.value)
    assert "6 malformed line(s)" in message
    for number, reason in [
        (2, "invalid JSON"),
        (4, "missing key(s) ['rejected']"),
        (5, "'chosen' is int"),
        (6, "'chosen' is empty"),
        (7, "expected a JSON object"),
        (8, "not valid UTF-8"),
    ]:
        assert f"{path}:{number}: {reason}" in message
    assert f"{path}:1:" not in message and f"{path}:9:" not in message
    assert "on_error='skip_with_warning'" in message


def test_skip_with_warning_returns_good_rows_and_lists_every_bad_line(tmp_path):
    path = tmp_path / "prefs.jsonl"
    _write_lines(path, BAD_FILE)
    with pytest.warns(PreferenceFileWarning) as record:
        pairs = read_preferences(path, on_error="skip_with_warning")
    assert pairs == [PreferencePair("p", "good", "bad"), PreferencePair("", "fine", "also fine")]
    message = str(record[0].message)
    assert "skipped 6 malformed line(s)" in message
    for number in (2, 4, 5, 6, 7, 8):
        assert f"{path}:{number}:" in message


def test_clean_file_reads_without_warning(tmp_path):
    path = tmp_path / "prefs.jsonl"
    write_preferences(path, PAIRS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_preferences(path, on_error="skip_with_warning") == PAIRS


def test_bad_arguments(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(ValueError, match="on_error='ignore'"):
        read_preferences(path, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        read_preferences(tmp_path / "missing.jsonl")
    with pytest.raises(TypeError, match="pair 0 is dict"):
        append_preferences(path, [{"prompt": "p", "chosen": "a", "rejected": "b"}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'rejected' is empty"):
        PreferencePair("p", "a", "")
    with pytest.raises(TypeError, match="PreferencePair.chosen is NoneType"):
        PreferencePair("p", None, "b")  # type: ignore[arg-type]
    assert read_preferences(path) == [PreferencePair("p", "a", "b")]  # the failed append wrote nothing
