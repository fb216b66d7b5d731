"""JSON Lines sink: one JSON object per line (analysis results, captions, alerts, summaries,
and the pipeline's status and archive records).

Each line is flushed as it is written, so a consumer can `tail -f` the file and an interrupted
run leaves only complete lines. The name `-` writes to standard output (`--jsonl - | jq`).
Lines are UTF-8 (`ensure_ascii=False`) and strict JSON: NaN and infinities become `null`,
because most JSON parsers outside Python reject them.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.core.frame import Annotation, Caption
from streamer.errors import SinkError
from streamer.outputs._append import append_whole
from streamer.outputs._errors import open_error, write_error
from streamer.outputs.options import STDOUT

if TYPE_CHECKING:
    from streamer.analysis.alerts import Alert, AlertCleared

__all__ = [
    "JsonlWriter",
    "alert_cleared_record",
    "alert_record",
    "annotation_record",
    "caption_record",
    "summary_record",
]

_DIGITS = 4

# Every stream's writer to standard output takes this lock: their lines never interleave.
_STDOUT_LOCK = threading.Lock()


class JsonlWriter:
    """Appends JSON objects to a file, one per line, flushed per line.

    Args:
        path: the file to create (truncated if it exists).

    Raises:
        SinkOpenError: the file cannot be created.

    Example:
        >>> with JsonlWriter("events.jsonl") as out:  # doctest: +SKIP
        ...     out.write(annotation_record(annotation))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = path = os.fspath(path)
        self._lines = 0
        self._closed = False
        if path == STDOUT:  # shared by every stream's writer, never closed here
            self._file = sys.stdout.buffer
            self._lock = _STDOUT_LOCK
            return
        try:
            self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise open_error("JSON Lines", path, exc) from exc
        # Stages write from different tasks/threads; a line must never interleave with another.
        self._lock = threading.Lock()

    @property
    def lines_written(self) -> int:
        """Number of records written so far."""
        return self._lines

    def write(self, record: dict[str, Any]) -> None:
        """Write `record` as one line and flush it.

        Raises:
            TypeError: a value is not JSON-serialisable.
            SinkError: the writer is closed or the file cannot be written.
        """
        line = dumps_line(record)
        with self._lock:
            if self._closed:
                raise SinkError(f"JSON Lines output {self._path!r} is closed")
            if self._path == STDOUT:
                _print_line(self._file, line)
            else:
                append_whole(self._file, line, "JSON Lines", self._path)
            self._lines += 1

    def close(self) -> None:
        """Close the file (standard output stays open). Safe to call more than once."""
        with self._lock:
            self._closed = True
            if self._path != STDOUT:
                self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _print_line(out: Any, line: bytes) -> None:
    """Write one line to standard output and flush it; a reader that went away (`| head`)
    ends the output with a `SinkError` that says so."""
    try:
        out.write(line)
        out.flush()
    except BrokenPipeError as exc:
        # What is still buffered can never be written: point the descriptor at /dev/null so
        # that the interpreter's own flush at exit does not fail again (Python's advice for
        # SIGPIPE, in the `signal` module's documentation).
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no descriptor (a test's capture)
            pass
        raise SinkError("JSON Lines output '-': the program reading standard output has "
                        "ended (a closed pipe)") from exc  # fmt: skip
    except OSError as exc:
        raise write_error("JSON Lines", STDOUT, exc) from exc


def dumps_line(record: dict[str, Any]) -> bytes:
    """Encode `record` as one strict-JSON UTF-8 line ending in a newline."""
    text = json.dumps(_finite(record), ensure_ascii=False, allow_nan=False, default=_default)
    # U+2028/U+2029 are legal inside JSON strings but `str.splitlines` and some JS tooling
    # treat them as line ends; escape them so one record is always exactly one line.
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    # A lone surrogate cannot be UTF-8; "replace" keeps the line valid.
    return (text + "\n").encode("utf-8", "replace")


def annotation_record(a: Annotation) -> dict[str, Any]:
    """The JSON Lines record of an analysed frame: tags and scene-change score.

    Example:
        >>> from streamer.core.frame import Tag
        >>> annotation_record(Annotation("cam", 7, 0.28, (Tag("dog", 0.61834),), 0.1))
        {'type': 'analysis', 'stream': 'cam', 'frame': 7, 'pts': 0.28, 'tags': [{'label': 'dog', 'score': 0.6183}], 'scene_score': 0.1}
    """  # noqa: E501 - a doctest line cannot wrap
    return {
        "type": "analysis",
        "stream": a.stream,
        "frame": a.frame_index,
        "pts": _round(a.pts),
        "tags": [{"label": t.label, "score": _round(t.score)} for t in a.tags],
        "scene_score": _round(a.scene_score),
    }


def caption_record(c: Caption) -> dict[str, Any]:
    """The JSON Lines record of a caption."""
    return {
        "type": "caption",
        "stream": c.stream,
        "frame": c.frame_index,
        "pts": _round(c.pts),
        "text": c.text,
        "source": c.source,
    }


def alert_record(a: Alert, *, wall: bool) -> dict[str, Any]:
    """The JSON Lines record of an alert; `wall` adds its wall-clock time (live streams only:
    a file's records stay the same from run to run). With `--archive`, `clip` is where its
    clip will be, relative to the archive directory (the file appears once it is cut)."""
    record = {
        "type": "alert",
        "stream": a.stream,
        "frame": a.frame_index,
        "pts": _round(a.time),
        "query": a.query,
        "score": _round(a.score),
        "threshold": a.threshold,
        "caption": a.caption,
    }
    if wall:
        record["wall"] = round(a.wall, 3)
    if a.clip is not None:
        record["clip"] = a.clip
    return record


def alert_cleared_record(c: AlertCleared, *, wall: bool) -> dict[str, Any]:
    """The JSON Lines record of an alert that stopped holding (`AlertCleared`): the frame
    that cleared it, when the alert last fired (`fired_pts`) and why (`reason`: "no match", or
    "offline", "ended", "stopped", "removed" when its stream stopped delivering frames:
    `AlertCleared`); `wall` as for alerts."""
    record = {
        "type": "alert_cleared",
        "stream": c.stream,
        "frame": c.frame_index,
        "pts": _round(c.time),
        "query": c.query,
        "score": _round(c.score),
        "threshold": c.threshold,
        "fired_pts": _round(c.fired),
        "reason": c.reason,
    }
    if wall:
        record["wall"] = round(c.wall, 3)
    return record


def summary_record(s: Any, *, wall: bool) -> dict[str, Any]:
    """The JSON Lines record of an LLM summary (`streamer.archive.summaries.Summary`): its
    span, text, the moments it cites and a file's chapters; `wall` adds wall-clock times (live
    streams only: a file's records stay the same from run to run)."""
    cited = [{"pts": _round(r.media_time), **({"wall": round(r.wall_time, 3)} if wall else {})}
             for r in s.cited]  # fmt: skip
    record = {
        "type": "summary",
        "stream": s.stream,
        "kind": s.kind,
        "start_pts": _round(s.start_media),
        "end_pts": _round(s.end_media),
        "text": s.text,
        "model": s.model,
        "cited": cited,
        "chapters": [
            {"start": _round(c.start), "end": _round(c.end), "title": c.title, "source": c.source}
            for c in s.chapters
        ],
    }
    if wall:
        record["start_wall"] = round(s.start_wall, 3)
        record["end_wall"] = round(s.end_wall, 3)
    return record


def _round(x: float) -> float | None:
    x = float(x)
    return round(x, _DIGITS) if math.isfinite(x) else None


def _finite(value: Any) -> Any:
    # json has no hook for floats, so non-finite values are replaced before encoding.
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _default(value: Any) -> Any:
    # numpy scalars and arrays come straight out of the analyser.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    raise TypeError(f"record value of type {type(value).__name__} is not JSON-serialisable")
