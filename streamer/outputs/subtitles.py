"""Subtitle sink: one SRT and/or WebVTT cue per caption, in media time.

A caption shows from its `pts` until the next caption, so a cue is only complete when the next
caption arrives. `SubtitleWriter.add` writes the *previous* cue at that moment and flushes it,
so a run that is interrupted leaves files that hold every finished cue and parse cleanly.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import TextIO

from streamer.core.frame import Caption
from streamer.errors import SinkError
from streamer.outputs._append import append_whole
from streamer.outputs._errors import open_error

__all__ = ["SubtitleWriter"]

#: A cue whose `end_pts` comes too early is stretched to last at least this long.
MIN_LAST_CUE_S = 0.5

# Unicode line and paragraph separators: players treat them as line breaks.
_LINE_BREAKS = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n", "\v": "\n", "\f": "\n"})
_ARROW = re.compile(r"-{2,}>")
_SPACES = re.compile(r"[ \t]+")
_DROP = frozenset({"Cc", "Cs"})


@dataclass
class _Cue:
    start: float
    text: str  # cleaned, lines joined by "\n"


def clean_cue_text(text: str) -> str:
    """Return caption text that cannot break a cue, in either format.

    Control characters are dropped, runs of spaces collapse, and blank lines are removed,
    because a blank line ends a cue in both SRT and WebVTT. `-->` (the timing arrow) becomes
    `->`, so a line of text is never read as a timing line.
    """
    lines = []
    for raw in text.translate(_LINE_BREAKS).split("\n"):
        # Tabs become spaces; other control characters and lone surrogates (which cannot be
        # written as UTF-8) are dropped.
        kept = "".join(
            " " if ch == "\t" else ch
            for ch in raw
            if ch == "\t" or unicodedata.category(ch) not in _DROP
        )
        line = _SPACES.sub(" ", _ARROW.sub("->", kept)).strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def _escape_vtt(text: str) -> str:
    # WebVTT cue text is markup: `<b>` is a tag and `&` starts an entity.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_srt(text: str) -> str:
    # SRT has no escapes, but players render `<b>`/`<font>` tags and `{\an8}` overrides.
    # Angle brackets become look-alike quotes and `{\` loses its backslash, so caption text
    # from an LLM is shown as written instead of restyling the subtitle.
    return text.replace("<", "\u2039").replace(">", "\u203a").replace("{\\", "{")


def _timestamp(seconds: float, sep: str) -> str:
    ms = _millis(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _millis(seconds: float) -> int:
    # Media time before 0 (or garbage) cannot be expressed in either format.
    return round(seconds * 1000) if math.isfinite(seconds) and seconds > 0 else 0


class SubtitleWriter:
    """Writes captions as SRT and/or WebVTT cues, one file per format.

    One writer serves one stream: every caption added is treated as the stream's current one.

    Args:
        srt_path: SRT file to create, or None.
        vtt_path: WebVTT file to create, or None.

    Raises:
        SinkOpenError: a file cannot be created.

    Example:
        >>> subs = SubtitleWriter("out.srt", "out.vtt")  # doctest: +SKIP
        >>> subs.add(caption)  # ends the previous cue at caption.pts  # doctest: +SKIP
        >>> subs.close(end_pts=12.0)  # doctest: +SKIP
    """

    def __init__(
        self, srt_path: str | os.PathLike[str] | None, vtt_path: str | os.PathLike[str] | None
    ) -> None:
        self._names = " and ".join(repr(os.fspath(p)) for p in (srt_path, vtt_path) if p)
        self._srt = _open(srt_path, "SRT")
        try:
            self._vtt = _open(vtt_path, "WebVTT")
        except BaseException:
            if self._srt is not None:
                self._srt.close()
            raise
        if self._vtt is not None:
            self._vtt.write("WEBVTT\n\n")
            self._vtt.flush()
        self._pending: _Cue | None = None
        self._cues_written = 0
        self._closed = False

    @property
    def cues_written(self) -> int:
        """Number of cues written to the file(s) so far."""
        return self._cues_written

    def add(self, caption: Caption) -> None:
        """Start a cue for `caption`, ending and writing the previous one at `caption.pts`.

        A caption with the same text as the current cue extends it. A caption whose text is
        empty once cleaned ends the current cue without starting a new one.

        Raises:
            SinkError: the writer is closed.
        """
        if self._closed:
            raise SinkError(f"subtitle output {self._names} is closed")
        text = clean_cue_text(caption.text)
        pending = self._pending
        if pending is not None and text == pending.text:
            return
        # Captions arrive in media order; clamp a late one so cue times never run backwards.
        start = caption.pts if pending is None else max(caption.pts, pending.start)
        if pending is not None:
            self._write(pending, end=start)
        self._pending = _Cue(start, text) if text else None

    def close(self, end_pts: float) -> None:
        """Write the last cue, ending at `end_pts` (at least 0.5 s after it starts), and close.

        Safe to call more than once; later calls do nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending is not None:
                pending = self._pending
                self._pending = None
                self._write(pending, end=max(end_pts, pending.start + MIN_LAST_CUE_S))
        finally:
            for file in (self._srt, self._vtt):
                if file is not None:
                    file.close()

    def _write(self, cue: _Cue, end: float) -> None:
        # Cues shorter than a millisecond (a caption replaced at once) would not show at all.
        if _millis(end) <= _millis(cue.start):
            return
        self._cues_written += 1
        # Each cue goes in whole or not at all (a full disk): the files stay parseable.
        if self._srt is not None:
            times = f"{_timestamp(cue.start, ',')} --> {_timestamp(end, ',')}"
            block = f"{self._cues_written}\n{times}\n{_escape_srt(cue.text)}\n\n"
            append_whole(self._srt, block, "SRT", self._srt.name)
        if self._vtt is not None:
            times = f"{_timestamp(cue.start, '.')} --> {_timestamp(end, '.')}"
            block = f"{times}\n{_escape_vtt(cue.text)}\n\n"
            append_whole(self._vtt, block, "WebVTT", self._vtt.name)


def _open(path: str | os.PathLike[str] | None, kind: str) -> TextIO | None:
    if path is None:
        return None
    path = os.fspath(path)
    try:
        # newline="\n": both formats accept LF, and the bytes are the same on every OS.
        return open(path, "w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise open_error(kind, path, exc) from exc
