"""Observers: what else watches a run besides its files (web viewer, window, webhook alerts).

The pipeline tells every observer what happens, as it happens:

- `start(run)` once the streams are open (await it: a web server binds its port here);
  `run` is the live run: `run.streams` (each a `StreamRun` with `name`, `live`, `stats`,
  `dropped`, `caption`, `latest`, `source.status`), `run.client` (the `LlmClient` or None),
  `run.encoder` (the encoder service: `model`, `load()`), `run.config` and `run.started`.
- `frame(stream, image, timeline)` from the stream's writer thread, with the frame as drawn
  (overlay included). The image is not drawn on again: an observer may keep a reference.
  Must return at once (store it, hand it on); never encode or send here.
- `analysis(stream, annotation)`, `caption(stream, caption)`, `alert(stream, alert)` on the
  event loop, in each stream's order. Must not block either.
- `embedded(stream, annotation, embedding, frame, alerts)` on the event loop for every analysed
  frame, as soon as it is analysed: its pooled embedding (float32, L2-normalised), the `Frame`
  (its small analysis picture is `frame.analysis_image`) and the names of the alerts that fired
  on it (the archive indexes moments from these). Must not block either.
- `alert_cleared(stream, cleared)` on the event loop when an alert that fired has stopped
  holding (`streamer.analysis.alerts.AlertCleared`: its frames no longer match and its
  cooldown is over, or its stream stopped delivering frames: offline, ended, the run stopped,
  the stream removed), in the stream's order with its alerts; every alert still on when its
  stream ends clears once, before `finish` (or `stream_removed`).
- `summary(stream, summary)` on the event loop when the LLM has summarised a stretch of a
  stream (`streamer.archive.summaries.Summary`: its span, text and cited moments).
- `stream_added(stream)` / `stream_removed(stream)` on the event loop when a stream joins a
  running run or leaves it (`streamer.control`: the HTTP API); `run.streams` already holds
  it / no longer does. A removed stream's outputs are finished by then.
- `finish()` once every stream has delivered its last frame, before their outputs are closed
  (await it): a file's summary still goes into its JSON Lines here. Not called when the run
  fails.
- `stop()` once every stream is done, before the run returns (await it).

An observer that raises is logged once and its further calls of that kind are skipped: a
broken viewer never stops the video. `wants_frames` (a property) says whether frames are needed
now (a window, a viewer with a client connected): the writer draws a frame that has no video
output only when some observer wants it. `wants_raw` asks for frames as decoded, without the
overlay (a window with its overlay turned off): they are not drawn for it, and when nothing
else needs the overlay they are not drawn at all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from streamer.core.frame import Annotation, Caption, Frame

__all__ = ["FirstAnalysis", "Observer", "Observers"]

log = logging.getLogger(__name__)


class Observer:
    """Base class: every hook is a no-op; override the ones you need."""

    @property
    def wants_frames(self) -> bool:
        return False

    @property
    def wants_raw(self) -> bool:
        """`frame()` gets frames without the overlay (read only while `wants_frames`)."""
        return False

    async def start(self, run: Any) -> None:
        """The run is about to start (streams open)."""

    def frame(self, stream: str, image: np.ndarray, timeline: float) -> None:
        """A frame as drawn (writer thread)."""

    def analysis(self, stream: str, annotation: Annotation) -> None:
        """A frame was analysed (event loop)."""

    def caption(self, stream: str, caption: Caption) -> None:
        """A new caption is shown (event loop)."""

    def embedded(
        self,
        stream: str,
        annotation: Annotation,
        embedding: np.ndarray,
        frame: Frame,
        alerts: tuple[str, ...],
    ) -> None:
        """A frame was analysed: its embedding and picture (event loop)."""

    def alert(self, stream: str, alert: Any) -> None:
        """A text-query alert fired (event loop)."""

    def alert_cleared(self, stream: str, cleared: Any) -> None:
        """A text-query alert that fired has stopped holding (event loop)."""

    def summary(self, stream: str, summary: Any) -> None:
        """The LLM summarised a stretch of the stream (event loop)."""

    def stream_added(self, stream: Any) -> None:
        """A stream (a `StreamRun`) joined the running run (event loop)."""

    def stream_removed(self, stream: Any) -> None:
        """A stream left the running run, its outputs finished (event loop)."""

    async def finish(self) -> None:
        """Every stream has delivered its last frame; the outputs are still open."""

    async def stop(self) -> None:
        """The run is over."""


class FirstAnalysis(Observer):
    """Notes a run's first analysed frame: `await first.reached(run)` returns then, or when
    `run` (the run's task) ends first. A time limit counted from there is streaming time; from
    the run's start it would include the model's load, and a first run's conversion of the
    model and embedding of its labels (seconds)."""

    def __init__(self) -> None:
        self._seen = asyncio.Event()

    def analysis(self, stream: str, annotation: Annotation) -> None:
        self._seen.set()

    async def reached(self, run: asyncio.Future) -> None:
        seen = asyncio.ensure_future(self._seen.wait())
        try:
            await asyncio.wait([run, seen], return_when=asyncio.FIRST_COMPLETED)
        finally:
            seen.cancel()


class Observers(Observer):
    """Every observer of a run, called in turn; one that fails is logged and skipped after."""

    def __init__(self, observers: list[Observer] | tuple[Observer, ...] = ()) -> None:
        self.items: list[Observer] = list(observers)
        self._broken: set[tuple[int, str]] = set()

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, observer: Observer) -> None:
        self.items.append(observer)

    @property
    def wants_frames(self) -> bool:
        return any(self._safe(o, "wants_frames", lambda o: o.wants_frames) for o in self.items)

    @property
    def wants_raw(self) -> bool:
        """Some observer wants frames without the overlay now."""
        return any(self._wants(o, raw=True) for o in self.items)

    @property
    def wants_drawn(self) -> bool:
        """Some observer wants frames with the overlay now."""
        return any(self._wants(o, raw=False) for o in self.items)

    def _wants(self, observer: Observer, raw: bool) -> bool:
        if not self._safe(observer, "wants_frames", lambda o: o.wants_frames):
            return False
        return bool(self._safe(observer, "wants_raw", lambda o: o.wants_raw)) == raw

    async def start(self, run: Any) -> None:
        """Start each in turn; if one fails, those already started are stopped again and its
        error is raised (a viewer that cannot bind its port is the user's error)."""
        started: list[Observer] = []
        try:
            for observer in self.items:
                await observer.start(run)
                started.append(observer)
        except BaseException:
            await Observers(started).stop()
            raise

    def frame(self, stream: str, image: np.ndarray, timeline: float, raw: bool = False) -> None:
        """Hand the frame to the observers that want it: drawn ones, or `raw` ones."""
        for o in self.items:
            if self._wants(o, raw):
                self._safe(o, "frame", lambda o: o.frame(stream, image, timeline))

    def analysis(self, stream: str, annotation: Annotation) -> None:
        for o in self.items:
            self._safe(o, "analysis", lambda o: o.analysis(stream, annotation))

    def caption(self, stream: str, caption: Caption) -> None:
        for o in self.items:
            self._safe(o, "caption", lambda o: o.caption(stream, caption))

    def embedded(
        self,
        stream: str,
        annotation: Annotation,
        embedding: np.ndarray,
        frame: Frame,
        alerts: tuple[str, ...],
    ) -> None:
        for o in self.items:
            self._safe(o, "embedded", lambda o: o.embedded(stream, annotation, embedding, frame,
                                                            alerts))  # fmt: skip

    def alert(self, stream: str, alert: Any) -> None:
        for o in self.items:
            self._safe(o, "alert", lambda o: o.alert(stream, alert))

    def alert_cleared(self, stream: str, cleared: Any) -> None:
        for o in self.items:
            self._safe(o, "alert_cleared", lambda o: o.alert_cleared(stream, cleared))

    def summary(self, stream: str, summary: Any) -> None:
        for o in self.items:
            self._safe(o, "summary", lambda o: o.summary(stream, summary))

    def stream_added(self, stream: Any) -> None:
        for o in self.items:
            self._safe(o, "stream_added", lambda o: o.stream_added(stream))

    def stream_removed(self, stream: Any) -> None:
        for o in self.items:
            self._safe(o, "stream_removed", lambda o: o.stream_removed(stream))

    async def finish(self) -> None:
        for observer in self.items:
            try:
                await observer.finish()
            except Exception:
                log.exception("%s failed to finish", type(observer).__name__)

    async def stop(self) -> None:
        for observer in self.items:
            try:
                await observer.stop()
            except Exception:
                log.exception("%s failed to stop", type(observer).__name__)

    def _safe(self, observer: Observer, hook: str, call) -> Any:
        key = (id(observer), hook)
        if key in self._broken:
            return None
        try:
            return call(observer)
        except Exception:
            self._broken.add(key)
            log.exception("%s.%s failed; it is skipped from now on", type(observer).__name__, hook)
            return None
