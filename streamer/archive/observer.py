"""The archive as an observer of a run: every stream's moments go into the index.

For each analysed frame the pipeline hands over its embedding, picture and alerts
(`Observer.embedded`); the `MomentPicker` keeps one at every scene change and at least every
`--index-every` of the stream's time (an alert's frame always). A row waits until its caption
is settled: captions come later than analysis (a file's in frame order as its frames are
delivered, a live stream's when the LLM answers), and a row holds the caption in force at its
frame, the latest one made for a frame at or before it. Once a caption for a later frame has
come, that is known; rows also go once they have waited `HOLD_S` (a still scene repeats its
caption, and a repeated caption is not passed on), after `HOLD_ROWS` wait, or at the end of the
run. Thumbnails
are made and rows handed to the archive's writer on a low-priority thread, and the writer
commits in batches on its own: the event loop only appends to a list.

A file stream's rows refer to the file itself (path, size, modification time, media time);
a live stream's to its recording, found by stream and wall time.

Each alert gets a clip (`clip_alert`, `streamer.archive.alert_clips`) before anyone hears of
it, so its records carry the clip's path. The archive's state (`status`: the index's writer,
each stream's recording, the clips) is a plain dict, for the rooms that show it (status table,
`/api/status`, `/metrics`) and do not import the archive; `report_changes` writes an
`archive` record to a stream's JSON Lines when the archive stops writing or starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.archive.options import ArchiveConfig
from streamer.core.background import LowPriorityPool
from streamer.core.events import Observer
from streamer.core.frame import Annotation, Caption, Frame, PixelsUnavailable

__all__ = ["ArchiveObserver"]

log = logging.getLogger("streamer.archive")

RETENTION_EVERY_S = 60.0  # how often a running archive applies --retain and --archive-max-gb
CLIPS_EVERY_S = 0.5  # how often waiting alert clips are looked at
HOLD_ROWS = 64  # rows of a stream that may wait for their caption before they go without
HOLD_S = 15.0  # ... and how long one may wait (an LLM caption comes within seconds)


@dataclass
class _Pending:
    """A picked frame whose row waits for its caption to settle."""

    annotation: Annotation
    embedding: np.ndarray
    picture: np.ndarray | None
    wall: float
    scene_score: float
    alerts: tuple[str, ...]


@dataclass
class _Stream:
    """What the observer keeps per stream."""

    media: tuple[str, int, float] | None  # a file's (path, size, mtime); None for live
    captions: list[tuple[int, str, str]] = field(default_factory=list)  # (frame, text, source)
    pending: list[_Pending] = field(default_factory=list)
    rows: int = 0
    first_wall: float | None = None  # the earliest row of this run (a file's earlier runs before)

    def caption_at(self, frame_index: int) -> tuple[str, str] | None:
        """The caption in force at a frame: the latest made for a frame at or before it."""
        for index, text, source in reversed(self.captions):
            if index <= frame_index:
                return text, source
        return None


class ArchiveObserver(Observer):
    """Indexes the moments of a run into its archive (`--archive DIR`).

    Args:
        config: the archive's options.
        weights: the weights the run asked for (`EncoderChoice.weights`), recorded with the
            encoder in `archive.json` so a search loads the same model.
        scene_threshold: cosine distance from a stream's previous row that starts a new row.
    """

    def __init__(self, config: ArchiveConfig, weights: str, scene_threshold: float) -> None:
        self.config = config
        self.weights = weights
        self.scene_threshold = scene_threshold
        self.archive: Any = None
        self.writer: Any = None
        self.picker: Any = None
        self.streams: dict[str, _Stream] = {}
        self._pool: LowPriorityPool | None = None
        self._retention: asyncio.Task[None] | None = None
        self._failed = False
        self.clips: Any = None  # `AlertClips`, made in `start`
        self.run: Any = None
        self._tending: asyncio.Task[None] | None = None
        self._reported: dict[str, tuple[str, bool]] = {}  # stream → (index state, rec. failed)

    async def start(self, run: Any) -> None:
        """Open the archive for writing (made when new); fail the run before any work when it
        cannot be (another run writes it, another encoder's embeddings, a newer format)."""
        from streamer.archive import Archive, EncoderSpec, MomentPicker
        from streamer.archive.alert_clips import AlertClips

        spec = EncoderSpec.of(run.encoder.model, self.weights)
        self.archive = await asyncio.to_thread(Archive.create, self.config.path, spec)
        self.writer = self.archive.writer()
        self.picker = MomentPicker(self.config.index_every_s, self.scene_threshold)
        self.streams = {s.name: _Stream(_media_of(s.source)) for s in run.streams}
        self._pool = LowPriorityPool("archive", workers=1)
        self.run = run
        config = self.config
        self.clips = AlertClips(config.path, config.clip_before_s, config.clip_after_s)
        self._tending = asyncio.create_task(self._tend_clips(CLIPS_EVERY_S))
        if self.config.retain_s is not None or self.config.max_gb is not None:
            self._retention = asyncio.create_task(self._retain_every(RETENTION_EVERY_S))
        log.info("archive: indexing moments into %s", self.config.path)

    async def _retain_every(self, period: float) -> None:
        """Retention now and then, on a thread; a failure is reported and tried again."""
        from streamer.archive.retention import apply_retention

        config = self.config
        while True:
            try:
                pruned = await asyncio.to_thread(
                    apply_retention, self.archive, retain_s=config.retain_s, max_gb=config.max_gb
                )
            except Exception as exc:  # the streams go on; the next pass tries again
                log.warning("archive: retention failed: %s", exc)
            else:
                if pruned.segments or pruned.rows:
                    log.info("archive: retention removed %d segments (%.1f MB) and %d moments",
                             pruned.segments, pruned.segment_bytes / 1e6, pruned.rows)  # fmt: skip
            await asyncio.sleep(period)

    async def _tend_clips(self, period: float) -> None:
        """Hand the live clips whose span is recorded by now to their thread."""
        while True:
            await asyncio.sleep(period)
            self.clips.poll()

    def clip_alert(self, alert: Any, frame: Frame) -> Any:
        """The alert with the path of its clip (`Alert.clip`, relative to the archive), whose
        cutting is set going: from the file, or from the stream's recording once it holds the
        span. Unchanged for a live stream that is not recorded (no clip to cut)."""
        state = self.streams.get(alert.stream)
        if self.clips is None or state is None:
            return alert
        media = state.media[0] if state.media is not None else None
        if media is None and alert.stream not in self._recorders():
            return alert
        name = self.clips.assign(
            alert.stream, alert.query, wall=_wall_of(frame), media=media, media_time=alert.time,
            name=alert.clip,
        )  # fmt: skip
        return dataclasses.replace(alert, clip=name)

    def _recorders(self) -> dict[str, Any]:
        """The run's recorders by stream (`PacketTap`s, each with a `state`)."""
        return getattr(self.run, "recorders", None) or {}

    def embedded(
        self,
        stream: str,
        annotation: Annotation,
        embedding: np.ndarray,
        frame: Frame,
        alerts: tuple[str, ...],
    ) -> None:
        state = self.streams.get(stream)
        if state is None or self.picker is None:
            return
        if state.pending and time.time() - state.pending[0].wall > HOLD_S:
            waited = [p for p in state.pending if time.time() - p.wall > HOLD_S]
            self._flush(state, upto=waited[-1].annotation.frame_index)
        pick = self.picker.pick(stream, annotation.pts, embedding)
        if pick is None and not alerts:
            return
        state.pending.append(_Pending(
            annotation, embedding, _picture(frame), _wall_of(frame),
            pick.scene_score if pick is not None else 0.0, alerts,
        ))  # fmt: skip
        if len(state.pending) > HOLD_ROWS:  # no caption for long: go with what is known
            self._flush(state, upto=state.pending[0].annotation.frame_index)
        self._report_failure()

    def _report_failure(self) -> None:
        """Say once when the index stopped being written (a full disk): the streams go on."""
        if self._failed or self.writer is None:
            return
        stats = self.writer.stats()
        if stats.state == "failed":
            self._failed = True
            log.warning("archive: the index of %s stopped being written: %s; the streams and "
                        "the other outputs go on", self.config.path, stats.error)  # fmt: skip

    def caption(self, stream: str, caption: Caption) -> None:
        state = self.streams.get(stream)
        if state is None:
            return
        state.captions = [*state.captions[-(HOLD_ROWS - 1) :],
                          (caption.frame_index, caption.text, caption.source)]  # fmt: skip
        self._flush(state, upto=caption.frame_index)

    async def stop(self) -> None:
        """Write what waits, then close the archive (the writer's last batch included)."""
        if self.archive is None:
            return
        for task in (self._retention, self._tending):
            if task is not None:
                task.cancel()
        for state in self.streams.values():
            self._flush(state, upto=None)
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown)
        await asyncio.to_thread(self._replace_earlier_runs)
        await asyncio.to_thread(self.clips.finish)  # the recordings are closed by now
        if self.clips.written or self.clips.failed:
            log.log(logging.WARNING if self.clips.failed else logging.INFO,
                    "archive: %d alert clips written, %d failed", self.clips.written,
                    self.clips.failed)  # fmt: skip
        stats = self.writer.stats()
        await asyncio.to_thread(self.archive.close)
        missed = stats.dropped + stats.lost
        log.log(
            logging.WARNING if missed or stats.error else logging.INFO,
            "archive: %d moments indexed into %s%s%s", stats.written + stats.queued,
            self.config.path, f"; {missed} not written" if missed else "",
            f" ({stats.error})" if stats.error else "",
        )  # fmt: skip

    def _replace_earlier_runs(self) -> None:
        """A file indexed to its end again replaces its moments of earlier runs: the same file
        twice must not find every moment twice. A run stopped early keeps the old rows."""
        ended = {
            s.name for s in getattr(self.run, "streams", ()) if s.source.status.state == "ended"
        }
        done = [(n, s) for n, s in self.streams.items() if n in ended and s.media and s.rows]
        if not done or not self.writer.flush(timeout=60.0) or self.writer.state != "ok":
            return  # the new rows are not all in: keep the old ones
        for name, state in done:
            try:
                gone = self.archive.prune_index(state.first_wall, name, media_path=state.media[0])
            except Exception as exc:  # the new rows are in: an old copy left is no loss
                log.warning("archive: the earlier moments of %s stay: %s", name, exc)
                continue
            if gone:
                log.info("archive: %s: %d moments of an earlier run of %s replaced", name, gone,
                         os.path.basename(state.media[0]))  # fmt: skip

    def stats(self) -> Any:
        """The writer's state and counters (`WriterStats`), None before the run starts."""
        return self.writer.stats() if self.writer is not None else None

    def status(self) -> dict[str, Any]:
        """The archive now, as plain JSON-ready values: `state` ("starting", "ok", "failed":
        no more moments are written, `error` says why, "closed"), the index's `moments`
        counters (with `waiting`: picked, held here for their caption, up to `HOLD_S`, not
        yet the writer's), each recorded stream's `recordings` entry and the alert `clips`."""
        stats = self.stats()
        clips = self.clips
        return {
            "path": self.config.path,
            "state": stats.state if stats is not None else "starting",
            "error": stats.error if stats is not None else None,
            "moments": {key: getattr(stats, key, 0) for key in
                        ("written", "queued", "dropped", "lost")}
                       | {"waiting": sum(len(s.pending) for s in self.streams.values())},
            "recordings": {name: _recording(tap.state) for name, tap in self._recorders().items()},
            "clips": {"written": clips.written if clips else 0,
                      "failed": clips.failed if clips else 0,
                      "waiting": clips.waiting if clips else 0},
        }  # fmt: skip

    def report_changes(self, streams: Any) -> None:
        """Write an `archive` record to each stream's JSON Lines when the index stops being
        written, or the stream's recording stops or starts again (event loop; the pipeline
        calls it while the streams deliver). A run where all goes well writes none."""
        if self.writer is None:
            return
        index = self.writer.state
        recorders = self._recorders()
        for stream in streams:
            tap = recorders.get(stream.name)
            key = (index, tap is not None and tap.state.state == "failed")
            if key == self._reported.setdefault(stream.name, ("ok", False)):
                continue
            self._reported[stream.name] = key
            stream.outputs.record({
                "type": "archive", "stream": stream.name, "wall": round(time.time(), 3),
                "state": index, "error": self.writer.error,
                "recording": _recording(tap.state) if tap is not None else None,
            })  # fmt: skip

    def _flush(self, state: _Stream, upto: int | None) -> None:
        """Hand the rows up to frame `upto` (all: None) to the archive thread."""
        if self._pool is None:
            return
        ready = [p for p in state.pending if upto is None or p.annotation.frame_index <= upto]
        state.pending = [p for p in state.pending if p not in ready]
        for pending in ready:
            state.rows += 1
            if state.first_wall is None or pending.wall < state.first_wall:
                state.first_wall = pending.wall
            caption = state.caption_at(pending.annotation.frame_index)
            self._pool.executor.submit(self._write, pending, caption, state.media)

    def _write(
        self,
        pending: _Pending,
        caption: tuple[str, str] | None,
        media: tuple[str, int, float] | None,
    ) -> None:
        """Make the row (with its thumbnail) and hand it to the writer (archive thread)."""
        from streamer.archive import Moment, thumbnail_jpeg

        annotation = pending.annotation
        stream = annotation.stream
        try:
            thumbnail = thumbnail_jpeg(pending.picture) if pending.picture is not None else None
            self.writer.put(Moment(
                stream=stream, media_time=annotation.pts, wall_time=pending.wall,
                embedding=np.asarray(pending.embedding, np.float32),
                tags=tuple((tag.label, float(tag.score)) for tag in annotation.tags),
                caption=caption[0] if caption else None,
                caption_source=caption[1] if caption else None,
                alerts=pending.alerts, scene_score=pending.scene_score, thumbnail=thumbnail,
                media_path=media[0] if media else None, media_size=media[1] if media else None,
                media_mtime=media[2] if media else None,
            ))  # fmt: skip
        except Exception:  # one bad row must not stop the others (counted by the writer)
            log.exception("archive: a moment of %s could not be indexed", stream)


class ClipNamer(Observer):
    """Names an alert's clip where the alert fires, for a run whose archive is written by
    another process (a cluster's shard; its coordinator cuts the clip under that name). The
    name is the one `ArchiveObserver.clip_alert` gives in one process, so the stream's JSON
    Lines record carries the same `clip` either way."""

    def __init__(self) -> None:
        self.run: Any = None
        self.files: dict[str, bool] = {}  # stream → a file (named by media time)

    async def start(self, run: Any) -> None:
        self.run = run
        self.files = {s.name: _media_of(s.source) is not None for s in run.streams}

    def clip_alert(self, alert: Any, frame: Frame) -> Any:
        """The alert with its clip's path (relative to the archive); unchanged for a live
        stream that is not recorded."""
        from streamer.archive.alert_clips import clip_name

        if alert.stream not in self.files:
            return alert
        if self.files[alert.stream]:
            return dataclasses.replace(
                alert, clip=clip_name(alert.stream, alert.query, media_time=alert.time)
            )
        if alert.stream not in (getattr(self.run, "recorders", None) or {}):
            return alert
        return dataclasses.replace(
            alert, clip=clip_name(alert.stream, alert.query, wall=_wall_of(frame))
        )


def _media_of(source: Any) -> tuple[str, int, float] | None:
    """A file input's (absolute path, size, mtime); None for a live source."""
    if source.connects or source.path is None:
        return None
    path = os.path.abspath(source.path)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return path, stat.st_size, stat.st_mtime


def _recording(state: Any) -> dict[str, Any]:
    """A recorder's `TapState` as plain values; `bytes` counts the segment being written."""
    written = state.bytes
    if state.current:
        with contextlib.suppress(OSError):  # it was just closed (and counted) or removed
            written += os.stat(state.current).st_size
    return {"state": state.state, "detail": state.detail, "files": state.files,
            "bytes": written, "dropped": state.dropped}  # fmt: skip


def _picture(frame: Frame) -> np.ndarray | None:
    """The frame's small analysis picture (the thumbnail's source), None if it has none."""
    try:
        return frame.analysis_image
    except PixelsUnavailable:
        return None


def _wall_of(frame: Frame) -> float:
    """When the frame was captured, on the wall clock (its `captured` is monotonic)."""
    return time.time() - (time.monotonic() - frame.captured)
