"""JsonlWriter and the record builders: one strict JSON object per UTF-8 line."""

from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
import pytest

from streamer.core.frame import Annotation, Caption, Tag
from streamer.outputs import (
    JsonlWriter,
    SinkError,
    SinkOpenError,
    annotation_record,
    caption_record,
)


def _strict_lines(path) -> list[dict]:
    """Each line must be valid UTF-8 holding one strict-JSON object (no NaN/Infinity)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    records = []
    for line in raw.decode("utf-8").split("\n")[:-1]:

        def reject(constant: str) -> None:
            raise AssertionError(f"non-standard JSON constant {constant}")

        record = json.loads(line, parse_constant=reject)
        assert isinstance(record, dict)
        records.append(record)
    return records


def test_records_round_trip(tmp_path):
    annotation = Annotation(
        "cam 1", 120, 4.800000001, (Tag("dog", 0.618349), Tag("grass", 0.2)), 0.123456
    )
    caption = Caption("cam 1", 120, 4.8, "Un chien « joyeux » 🐶\nsur l'herbe", "llm")
    path = tmp_path / "events.jsonl"
    with JsonlWriter(str(path)) as out:
        out.write(annotation_record(annotation))
        out.write(caption_record(caption))
        assert out.lines_written == 2

    assert _strict_lines(path) == [
        {
            "type": "analysis",
            "stream": "cam 1",
            "frame": 120,
            "pts": 4.8,
            "tags": [{"label": "dog", "score": 0.6183}, {"label": "grass", "score": 0.2}],
            "scene_score": 0.1235,
        },
        {
            "type": "caption",
            "stream": "cam 1",
            "frame": 120,
            "pts": 4.8,
            "text": "Un chien « joyeux » 🐶\nsur l'herbe",
            "source": "llm",
        },
    ]
    # ensure_ascii=False: the text is stored as UTF-8, not as \u escapes.
    assert "🐶".encode() in path.read_bytes()


def test_each_line_is_on_disk_before_close(tmp_path):
    path = tmp_path / "live.jsonl"
    out = JsonlWriter(str(path))
    out.write({"type": "alert", "n": 1})
    assert _strict_lines(path) == [{"type": "alert", "n": 1}]
    out.close()
    out.close()  # idempotent
    with pytest.raises(SinkError, match="closed"):
        out.write({"late": True})


def test_non_finite_numbers_become_null(tmp_path):
    path = tmp_path / "nan.jsonl"
    annotation = Annotation("cam", 0, 0.0, (Tag("x", math.nan),), math.inf)
    with JsonlWriter(str(path)) as out:
        out.write(annotation_record(annotation))
        out.write({"a": [float("-inf"), np.float32("nan"), np.int64(3), np.array([1.5, np.nan])]})
    first, second = _strict_lines(path)
    assert first["tags"] == [{"label": "x", "score": None}] and first["scene_score"] is None
    assert second == {"a": [None, None, 3, [1.5, None]]}


def test_text_that_could_split_a_line_stays_on_one_line(tmp_path):
    path = tmp_path / "odd.jsonl"
    text = "a\nb\rc\u2028d\u2029e\x00f \ud800 g"
    with JsonlWriter(str(path)) as out:
        out.write({"text": text})
    assert len(path.read_text("utf-8").splitlines()) == 1
    (record,) = _strict_lines(path)
    # Everything survives except the lone surrogate, which UTF-8 cannot hold.
    assert record["text"] == text.replace("\ud800", "?")


def test_unserialisable_value_is_a_type_error(tmp_path):
    with JsonlWriter(str(tmp_path / "x.jsonl")) as out, pytest.raises(TypeError, match="object"):
        out.write({"bad": object()})


def test_concurrent_writers_never_interleave(tmp_path):
    path = tmp_path / "many.jsonl"
    out = JsonlWriter(str(path))

    def work(n: int) -> None:
        for i in range(200):
            out.write({"thread": n, "i": i, "pad": "x" * 500})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    records = _strict_lines(path)
    assert len(records) == 800
    assert sorted((r["thread"], r["i"]) for r in records) == [
        (n, i) for n in range(4) for i in range(200)
    ]


def test_unwritable_path_fails_at_construction(tmp_path):
    bad = tmp_path / "missing" / "x.jsonl"
    with pytest.raises(SinkOpenError, match="cannot open JSON Lines output") as caught:
        JsonlWriter(str(bad))
    assert str(bad) in str(caught.value)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_a_file_truncated_under_the_writer_goes_on_from_its_start(tmp_path):
    """logrotate's `copytruncate` empties a live run's JSON Lines while it writes: the next
    line goes at the file's new end, not at the old offset after a hole of zero bytes."""
    path = tmp_path / "cam.jsonl"
    with JsonlWriter(path) as out:
        out.write({"n": 1})
        out.write({"n": 2})
        os.truncate(path, 0)  # what copytruncate does after copying
        out.write({"n": 3})
    assert path.read_bytes() == b'{"n": 3}\n'
