"""Summaries while a run goes on (`--summary-every`) and at the end of a file (`--summary`).

The observer keeps, per stream, what the summaries are made of: the analysed frames the index
keeps as moments (the same `MomentPicker` rule as `ArchiveObserver`, so each cited moment is a
row of the index, found by stream and media time), with their tags and alerts, and the captions
as they come. It keeps no pixels and no embeddings.

- Live streams, every `--summary-every` of wall time: the window's moments go to the LLM; the
  summary is stored in the archive's summaries table, told to the observers (the viewer shows
  it), and written to the stream's JSON Lines. A caption still pending at the window's end is
  missed (the moment shows the caption before it). An LLM that is down costs the window its
  summary, with a warning; the run goes on.
- Files, with `--summary`, once the file is done and before its outputs close: the file's
  scene segments become chapters (titled by the LLM, or by their tags without one), written as
  WebVTT beside `-o` (`<stem>.chapters.vtt`) or in `DIR/chapters/`, and one summary of the
  whole file goes to the archive and the JSON Lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer.archive.chapters import chapters_vtt, scene_segments, title_segments
from streamer.archive.moments import MomentPicker
from streamer.archive.options import ArchiveConfig
from streamer.archive.summaries import Summary
from streamer.archive.summarize import Stretch, summarise
from streamer.core.events import Observer
from streamer.core.frame import Annotation, Caption, Frame
from streamer.errors import ArchiveError, LlmError, SinkError
from streamer.outputs.jsonl import summary_record

__all__ = ["CHAPTERS_DIR", "SummaryObserver", "chapters_path"]

log = logging.getLogger("streamer.archive")

CHAPTERS_DIR = "chapters"  # in the archive: chapters of files written without -o
_TAGS_KEPT = 5


@dataclass
class _Seen:
    """An analysed frame the index keeps as a moment: what a summary says about it."""

    stream: str
    frame_index: int
    media_time: float
    wall_time: float
    tags: tuple[tuple[str, float], ...]
    alerts: tuple[str, ...]
    scene_score: float
    media_path: str | None
    caption: str | None = None


@dataclass
class _Lane:
    """One stream's moments since its last summary, and its recent captions."""

    live: bool
    media_path: str | None
    window_start: float
    seen: list[_Seen] = field(default_factory=list)
    captions: list[tuple[int, str]] = field(default_factory=list)  # (frame index, text)

    def take(self) -> list[_Seen]:
        """The moments so far, each with the caption in force at its frame; the lane starts
        over (keeping the last caption, which is in force at the next moments)."""
        taken, self.seen = self.seen, []
        captions = sorted(self.captions)
        for moment in taken:
            moment.caption = next(
                (text for index, text in reversed(captions) if index <= moment.frame_index), None
            )
        self.captions = captions[-1:]
        return taken


class SummaryObserver(Observer):
    """Summaries of a run's streams, stored in its archive (`--summary-every`, `--summary`).

    Args:
        config: the archive's options (`summary_every_s`, `summary`, `index_every_s`).
        archive: the run's `ArchiveObserver` (its open archive takes the summaries).
        scene_threshold: the scene score that starts a new moment, and a new chapter.
    """

    def __init__(self, config: ArchiveConfig, archive: Any, scene_threshold: float) -> None:
        self.config = config
        self.archive_observer = archive
        self.scene_threshold = scene_threshold
        self.picker = MomentPicker(config.index_every_s, scene_threshold)
        self.lanes: dict[str, _Lane] = {}
        self.run: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, run: Any) -> None:
        self.run = run
        now, windows, files = time.time(), self.config.summary_every_s, self.config.summary
        # Only the streams that get summaries keep moments: live ones with --summary-every,
        # files with --summary.
        self.lanes = {
            s.name: _Lane(s.live, _media_path(s.source), now)
            for s in run.streams
            if ((windows is not None) if s.live else files)
        }
        if windows is not None and any(lane.live for lane in self.lanes.values()):
            self._task = asyncio.create_task(self._every(windows))
        if any(not lane.live for lane in self.lanes.values()) and run.client is None:
            log.warning(
                "archive: no LLM to summarise the files (--no-llm, or the server did not answer "
                "at start): their chapters are titled by their tags"
            )

    def embedded(
        self,
        stream: str,
        annotation: Annotation,
        embedding: np.ndarray,
        frame: Frame,
        alerts: tuple[str, ...],
    ) -> None:
        lane = self.lanes.get(stream)
        if lane is None:
            return
        pick = self.picker.pick(stream, annotation.pts, embedding)
        if pick is None and not alerts:
            return
        wall = time.time() - (time.monotonic() - frame.captured)
        tags = tuple((tag.label, float(tag.score)) for tag in annotation.tags[:_TAGS_KEPT])
        lane.seen.append(_Seen(
            stream, annotation.frame_index, annotation.pts, wall, tags, alerts,
            pick.scene_score if pick is not None else 0.0, lane.media_path,
        ))  # fmt: skip

    def caption(self, stream: str, caption: Caption) -> None:
        lane = self.lanes.get(stream)
        if lane is not None:
            lane.captions.append((caption.frame_index, caption.text))

    async def finish(self) -> None:
        """The streams are done, their outputs still open: chapters and summaries of files."""
        await self._cancel()
        if not self.config.summary:
            return
        for stream in self.run.streams:
            lane = self.lanes.get(stream.name)
            if lane is not None and not lane.live:
                await self._file(stream, lane)

    async def stop(self) -> None:
        await self._cancel()

    async def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- live windows --------------------------------------------------------------------------

    async def _every(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            for stream in self.run.streams:
                lane = self.lanes.get(stream.name)
                if lane is None or not lane.live:
                    continue
                try:
                    await self._window(stream, lane)
                except Exception:  # a bug: said with its traceback; the next window tries again
                    log.exception("archive: the summary of %s failed", stream.name)

    async def _window(self, stream: Any, lane: _Lane) -> None:
        now, start = time.time(), lane.window_start
        lane.window_start = now
        moments = lane.take()
        if not moments:
            return
        first, last = moments[0], moments[-1]
        stretch = Stretch(stream.name, "window", min(start, first.wall_time), now,
                          first.media_time, last.media_time, lane.media_path)  # fmt: skip
        summary = await self._summarise(stretch, moments)
        if summary is not None:
            await self._publish(stream, summary)

    # -- files ---------------------------------------------------------------------------------

    async def _file(self, stream: Any, lane: _Lane) -> None:
        moments = lane.take()
        if not moments:
            return
        end = max(float(stream.outputs.end_pts), moments[-1].media_time)
        segments = scene_segments(moments, end, self.scene_threshold)
        client = self.run.client
        stop = getattr(self.run, "stop", None)
        if client is not None and stop is not None and stop.is_set():
            # Told to stop: the LLM is not waited for (its titles and summary take seconds,
            # a silent server its timeouts); what was seen still gets its chapters.
            log.info("archive: the run was stopped: the chapters of %s are titled by their "
                     "tags, no summary", stream.name)  # fmt: skip
            client = None
        chapters = await title_segments(client, stream.name, segments)
        path = chapters_path(stream.outputs.config.video, self.config.path, stream.name)
        try:
            await asyncio.to_thread(_write_text, path, chapters_vtt(chapters))
        except OSError as exc:
            log.warning("archive: cannot write the chapters of %s to %s: %s", stream.name, path,
                        exc.strerror or exc)  # fmt: skip
        else:
            log.info("archive: %d chapters of %s in %s", len(chapters), stream.name, path)
        if client is None:
            return
        stretch = Stretch(stream.name, "file", moments[0].wall_time, moments[-1].wall_time,
                          0.0, end, lane.media_path)  # fmt: skip
        summary = await self._summarise(stretch, moments, chapters)
        if summary is not None:
            await self._publish(stream, summary)

    # -- shared --------------------------------------------------------------------------------

    async def _summarise(self, stretch: Stretch, moments: list[_Seen], chapters=()) -> Any:
        client = self.run.client
        if client is None:
            return None
        try:
            return await summarise(client, stretch, moments, chapters=chapters)
        except LlmError as exc:
            log.warning("archive: no summary of %s: %s; the run goes on", stretch.stream, exc)
            return None

    async def _publish(self, stream: Any, summary: Summary) -> None:
        """Store the summary, tell the observers (the viewer) and the JSON Lines."""
        log.info("archive: summary of %s: %s", summary.stream, " ".join(summary.text.split()))
        try:
            await asyncio.to_thread(self.archive_observer.archive.add_summaries, [summary])
        except ArchiveError as exc:
            log.warning("archive: the summary of %s was not stored: %s", summary.stream, exc)
        self.run.observers.summary(summary.stream, summary)
        try:
            stream.outputs.record(summary_record(summary, wall=stream.live))
        except SinkError as exc:
            log.warning("archive: the summary of %s was not written: %s", summary.stream, exc)


def chapters_path(video: str | None, archive: str, stream: str) -> Path:
    """Where a file's chapters go: beside its `-o` video as `<stem>.chapters.vtt`, else in the
    archive's `chapters/` folder."""
    if video:
        path = Path(video)
        return path.with_name(f"{path.stem}.chapters.vtt")
    return Path(archive) / CHAPTERS_DIR / f"{stream}.chapters.vtt"


def _media_path(source: Any) -> str | None:
    """A file input's absolute path (its moments are shown at media time); None when live."""
    if source.connects or source.path is None:
        return None
    return os.path.abspath(source.path)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
