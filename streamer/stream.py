"""One stream's part of the pipeline: route its frames to analysis and out, deliver them.

Two contracts (docs/design.md §2): a *file* stream delivers every frame and each frame waits for
the analysis that covers it, so the output does not depend on speed; a *live* stream keeps
only the freshest frames, never waits for analysis, and shows the latest result it has.
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from streamer.analysis.alerts import Alert, AlertCleared, AlertDetector, AlertRule
from streamer.analysis.captioner import near_duplicate, tag_caption
from streamer.analysis.service import EncoderService
from streamer.core import startup
from streamer.core.channel import Channel, DropPolicy
from streamer.core.events import Observers
from streamer.core.frame import Annotation, Caption, Frame
from streamer.core.sampler import Sampler
from streamer.core.stats import StreamStats
from streamer.outputs import alert_cleared_record, alert_record
from streamer.outputs.fanout import LIVE_TIME_BASE, Outputs, VideoTiming
from streamer.outputs.keep import keep_outputs
from streamer.outputs.lock import OutputLocks
from streamer.outputs.options import OutputConfig
from streamer.outputs.overlay import Hud
from streamer.sources import Source

LIVE_QUEUE = 2  # live frames buffered per stage: any more would only add latency
FILE_DECODED = 8  # a file's decoded frames waiting to be routed; the rest wait to be written
ALERT_SHOWN_S = 3.0  # seconds of stream time an alert stays on the overlay


@dataclass(frozen=True, slots=True)
class Analysis:
    """The result of analysing one sampled frame.

    Attributes:
        annotation: tags and scene score.
        caption: the caption made now (from tags), if one was due.
        pending: a file stream's caption still coming from the LLM (a future of `Caption`).
    """

    annotation: Annotation
    caption: Caption | None
    pending: asyncio.Future | None = None


@dataclass(frozen=True, slots=True, eq=False)
class AnalysisRequest:
    """A sampled frame on its way to the encoder, and where its result goes."""

    stream: StreamRun
    frame: Frame
    timeline: float
    future: asyncio.Future


@dataclass(frozen=True, slots=True)
class Shared:
    """What every stream of a run shares.

    Attributes:
        encoder: the encoder service: each stream submits its sampled frames on its own lane.
        sampler: which frames are analysed.
        hud_model: the encoder, as shown on the HUD.
        warning: banner for every frame (random weights), or None.
        started: `time.monotonic()` at the start of the run (its uptime).
        queue_frames: a file stream holds twice this many frames in flight (`_capacities`).
        copy_audio: copy a file's audio into its video output.
        caption_wait: seconds a file's output waits for a pending LLM caption.
        stopping: set when the run is told to stop: captions still pending are not waited for.
        llm_status: the LLM's state for the HUD ("LLM ok"), None without an LLM.
        observers: who else is told what happens (web viewer, window, webhook).
    """

    encoder: EncoderService[AnalysisRequest]
    sampler: Sampler
    hud_model: str
    warning: str | None
    started: float
    queue_frames: int
    copy_audio: bool
    caption_wait: float = 10.0
    stopping: asyncio.Event | None = None
    llm_status: Callable[[], str] | None = None
    observers: Observers = field(default_factory=Observers)


def _hold(stream: str, live: bool, outputs: OutputConfig) -> OutputLocks:
    """Lock a stream's output files (another run writing one stops this stream here, before
    anything is moved or written); a live stream's recordings from before are then kept
    beside them (a restarted service, a name added again)."""
    locks = OutputLocks(stream, outputs.paths()).acquire()
    if live:
        try:
            keep_outputs(stream, outputs.paths())
        except BaseException:
            locks.release()
            raise
    return locks


class StreamRun:
    """The route and deliver stages of one stream, and its outputs and statistics.

    Args:
        source: where frames come from (`run(out, stop)`).
        live: the live contract (drop oldest, never wait) rather than the file contract.
        outputs: this stream's output paths.
        shared: the run's shared parts.
    """

    def __init__(self, source: Source, live: bool, outputs: OutputConfig, shared: Shared) -> None:
        self.source = source
        self.name: str = source.name
        self.live = live
        self.node = platform.node()  # the machine it runs on (a cluster run has several)
        self.shared = shared
        self.stats = StreamStats()
        self.latest: Analysis | None = None
        self.caption: Caption | None = None
        self._hud_at, self._hud_latency = 0.0, ""
        self._t0: float | None = None  # a live stream's first frame: its timeline's 0
        # A file's alerts wait for their frame's turn (frame, time) → alerts; then the overlay
        # shows them for ALERT_SHOWN_S.
        self._alerts_due: dict[tuple[int, float], list[Alert | AlertCleared]] = {}
        self._alerts_shown: list[Alert] = []
        decoded, routed = _capacities(live, shared.queue_frames)
        policy = DropPolicy.DROP_OLDEST if live else DropPolicy.BLOCK
        self.frames: Channel[Frame] = Channel(decoded, policy, name=f"{self.name}/frames")
        self.outgoing: Channel[tuple] = Channel(routed, policy, name=f"{self.name}/out")
        self._locks = _hold(self.name, live, outputs)
        try:
            self.outputs = Outputs(
                outputs, self._timing(), self._audio_from(), self.name, shared.observers
            )
        except BaseException:
            self._locks.release()
            raise
        shared.encoder.open_lane(self.name, live=live)
        timing = self.outputs.timing
        # A file's time shown as 0; a remote file's (no `info` before it connects): None until
        # its first frame, when its connection has said.
        self._origin = float(timing.origin * timing.time_base) if timing.media else None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"writer-{self.name}")
        # Set by `close`: a stream removed from a running run may still get the results of
        # frames it sent before; its finished files take no more records.
        self.closed = False
        # Why it ends, once that is decided before its frames stop: "stopped" (the run's stop)
        # or "removed" (it left the running run); None: it ends when its input does.
        self.ending: str | None = None
        self._writer_done = False  # `close` has finished the outputs and the writer thread
        # Off (the stream API): the analyse stage asks no caption for its frames.
        self.captioned = True

    @property
    def dropped(self) -> int:
        """Frames dropped anywhere in this stream (live only; files drop nothing)."""
        return self.frames.dropped + self.outgoing.dropped + self.shared.encoder.dropped(self.name)

    @property
    def asked_rate(self) -> float | None:
        """The analysis rate asked for this stream (frames/s; None: every frame)."""
        return self.shared.sampler.rate(self.name)

    @property
    def expected(self) -> int | None:
        info = self.source.info
        return info.frames if info is not None and not self.live else None

    def _timing(self) -> VideoTiming:
        # Media timing for what describes itself before it runs (a local file); a network
        # stream's time base is only known once it connects.
        info = self.source.info
        if self.live or info is None:
            return VideoTiming(LIVE_TIME_BASE, None, media=False)
        origin = round(info.origin / info.time_base)  # `timeline` counts from it too
        return VideoTiming(info.time_base, info.fps, media=True, origin=origin)

    def _audio_from(self) -> str | None:
        info, path = self.source.info, self.source.path
        if self.live or not self.shared.copy_audio or info is None or path is None:
            return None
        return path if info.audio else None

    def timeline(self, frame: Frame) -> float:
        """Media time for files, from the time a player shows as 0 (`VideoInfo.origin`: an
        MPEG-TS may start hours in, a finished HLS playlist's segments at 1.4 s); for live
        streams, seconds since the stream's first frame (its own timestamps restart when it
        reconnects): every output of the stream starts at 0, so the subtitles beside an MP4
        play in step with it, whenever the stream began (a first run's label embeddings, a
        camera added an hour into the run)."""
        if not self.live:
            if self._origin is None:
                info = self.source.info
                self._origin = info.origin if info is not None else 0.0
            return frame.pts - self._origin
        if self._t0 is None:
            self._t0 = frame.captured
        return max(0.0, frame.captured - self._t0)

    async def route(self) -> None:
        """Send every frame out, and sampled ones to analysis; each frame carries the future
        of the analysis that covers it (its own when sampled, else the previous one's)."""
        loop = asyncio.get_running_loop()
        covering: asyncio.Future | None = None
        try:
            async for frame in self.frames:
                if not self.stats.decoded:
                    startup.mark("first frame decoded")
                self.stats.decoded += 1
                timeline = self.timeline(frame)
                # The first frame of a stream is always sampled, so `covering` is set from then on.
                sampled = self.shared.sampler.take(self.name, timeline)
                if sampled:
                    covering = loop.create_future()
                    request = AnalysisRequest(self, frame, timeline, covering)
                    await self.shared.encoder.submit(self.name, frame.analysis_image, request)
                await self.outgoing.put((frame, timeline, covering, sampled))
        finally:
            self.shared.encoder.close_lane(self.name)
            self.outgoing.close_nowait()

    def on_analysis(self, analysis: Analysis) -> None:
        """Called by the analyse stage when one of this stream's frames is analysed."""
        if self.closed:
            return
        self.stats.analysed += 1
        self.latest = analysis
        if self.live:  # files record in frame order, in `deliver`
            self.outputs.record_analysis(analysis.annotation, wall=round(time.time(), 3))
            self.shared.observers.analysis(self.name, analysis.annotation)
            if analysis.caption is not None:
                self.on_caption(analysis.caption)

    def on_caption(self, caption: Caption) -> None:
        """Show and record a caption, unless it only repeats the one shown (or captions were
        turned off for the stream while it was asked for)."""
        if self.closed or not self.captioned:
            return
        if self.caption is not None and near_duplicate(caption.text, self.caption.text):
            return
        self.caption = caption
        self.outputs.record_caption(caption)
        self.stats.captions += 1
        self.shared.observers.caption(self.name, caption)

    def on_alert(self, alert: Alert | AlertCleared) -> None:
        """Called by the analyse stage when a text-query alert fires on one of this stream's
        frames, or clears on one (`AlertCleared`). A live stream reports it now; a file stream
        when its frame is delivered, so its records stay in frame order and the banner starts
        on that frame."""
        if self.closed:
            return
        if self.live:
            self._report_alert(alert)
        else:
            self._alerts_due.setdefault((alert.frame_index, alert.time), []).append(alert)

    def on_cleared(self, cleared: list[AlertCleared]) -> None:
        """Called by the analyse stage with the alerts that cleared on one of this stream's
        frames; reported as `on_alert` reports alerts."""
        for done in cleared:
            self.on_alert(done)

    def stopped_delivering(self, alerts: AlertDetector | None, reason: str = "offline") -> None:
        """Its source went offline (or ended, or failed): no frame will say whether its alerts
        still hold, so the ones on clear now (`AlertCleared` with `reason`), rather than stay
        on until it comes back (a stale alarm in Home Assistant)."""
        if alerts is None or self.closed:
            return
        last = self.latest.annotation.frame_index if self.latest is not None else 0
        self.on_cleared(alerts.clear(self.name, self.now(), last, reason))

    def end_alerts(
        self, alerts: AlertDetector | None, reason: str | None = None,
        keep: tuple[AlertRule, ...] | None = None,
    ) -> None:  # fmt: skip
        """The stream is over: its alerts still on clear now, on every surface that got them
        (`AlertCleared` with reason `ending`, else "ended": its input ended). Called once
        every alert of its frames is reported (a file: its last frame delivered; a live
        stream: the analysis stage done with it), so the cleared ones are its last records;
        at the last analysed frame's time (a file's media time), or now (a live stream).
        With `keep` (its alerts changed through the API), only the ones it no longer has
        clear, with `reason` ("removed")."""
        if alerts is None or self.closed:
            return
        latest = self.latest.annotation if self.latest is not None else None
        last = latest.frame_index if latest is not None else 0
        when = self.now() if self.live or latest is None else latest.pts
        why = reason or self.ending or "ended"
        for cleared in alerts.clear(self.name, when, last, why, keep or ()):
            self._report_alert(cleared)

    def _report_alert(self, alert: Alert | AlertCleared) -> None:
        if isinstance(alert, AlertCleared):
            self.outputs.record(alert_cleared_record(alert, wall=self.live))
            self.shared.observers.alert_cleared(self.name, alert)
            return
        alert = replace(alert, caption=self.caption.text if self.caption is not None else None)
        self.stats.alerts += 1
        self.outputs.record(alert_record(alert, wall=self.live))
        self._alerts_shown.append(alert)
        self.shared.observers.alert(self.name, alert)

    def _alert_banner(self, timeline: float) -> str | None:
        """The overlay's alert line: the alerts of the last ALERT_SHOWN_S seconds, newest first."""
        shown = [a for a in self._alerts_shown if timeline - a.time < ALERT_SHOWN_S]
        self._alerts_shown = shown
        recent = [a for a in shown if a.time <= timeline]
        return "  |  ".join(a.banner for a in reversed(recent)) or None

    def now(self) -> float:
        """The live timeline's present (seconds since the stream's first frame; 0 before it)."""
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    async def _settle(self, analysis: Analysis) -> None:
        """Record a file stream's analysis and its caption, waiting (bounded) for the LLM's."""
        self.outputs.record_analysis(analysis.annotation)
        self.shared.observers.analysis(self.name, analysis.annotation)
        caption = analysis.caption
        if analysis.pending is not None:
            caption = await self._pending_caption(analysis)
        if caption is not None:
            self.on_caption(caption)
        key = (analysis.annotation.frame_index, analysis.annotation.pts)
        for alert in self._alerts_due.pop(key, ()):
            self._report_alert(alert)

    async def _pending_caption(self, analysis: Analysis) -> Caption:
        """The LLM's caption of a file's frame, waited for up to `caption_wait`, or the tags'
        when it does not come in time or the run is stopping (Ctrl-C does not wait on it)."""
        pending = asyncio.shield(analysis.pending)
        stopping = self.shared.stopping
        if stopping is not None and stopping.is_set() and not pending.done():
            return tag_caption(analysis.annotation)
        stop = asyncio.ensure_future(stopping.wait()) if stopping is not None else None
        try:
            await asyncio.wait([f for f in (pending, stop) if f is not None],
                               timeout=self.shared.caption_wait,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            if stop is not None:
                stop.cancel()
        if pending.done() and not pending.cancelled():
            return pending.result()
        if stopping is None or not stopping.is_set():
            self.stats.caption_timeouts += 1
        return tag_caption(analysis.annotation)

    async def deliver(self) -> None:
        """Overlay and write every frame that reaches it, in order, on the writer thread."""
        loop = asyncio.get_running_loop()
        shown: Analysis | None = None
        async for frame, timeline, future, sampled in self.outgoing:
            if not self.live and not future.done():
                self.shared.encoder.hurry()  # its frame waits in a batch being filled
            # Shielded: a removal that cancels this task leaves the analysis to its stage.
            analysis = self.latest if self.live else await asyncio.shield(future)
            if not self.live and analysis is not shown:
                await self._settle(analysis)
            shown = analysis
            annotation = analysis.annotation if analysis is not None else None
            await loop.run_in_executor(
                self._writer, self._write, frame, timeline, annotation,
                self.caption, self._hud(frame, timeline), sampled,
            )  # fmt: skip
            self.stats.latency.add(time.monotonic() - frame.captured)

    def _write(self, frame: Frame, *args) -> None:
        """Write a frame and count it, on the writer thread: a write in flight when a removal
        cancels `deliver` still happens, and is counted."""
        self.outputs.write_frame(frame, *args)
        self.stats.delivered += 1

    def close(self) -> None:
        """Finish the outputs, after any write in flight (blocking: the run's last step).

        It runs on the writer thread and is waited for without awaiting, so a cancelled run
        still leaves finished files. Called once the analysis stage has ended too, so a live
        stream's last analyses are recorded before its files close (a stream removed from a
        running run is closed while the others run: what reaches it after is not recorded).
        Once: a stream that ended on its own, removed after, is closed already.
        """
        self.closed = True
        if self._writer_done:
            return
        self._writer_done = True
        try:
            self._writer.submit(self.outputs.close).result()
        finally:
            self._writer.shutdown(wait=True)
            self._locks.release()  # after the files are whole: then another run may take them

    def _hud(self, frame: Frame, timeline: float) -> Hud:
        if self.live:
            # Percentiles over the window cost ~0.1 ms: refresh them twice a second, not per frame.
            if timeline - self._hud_at >= 0.5 or not self._hud_latency:
                p50, p99 = self.stats.latency.percentiles(50, 99)
                self._hud_latency = (
                    f"latency {p50 * 1000:.0f}/{p99 * 1000:.0f} ms" if p50 == p50 else ""
                )
                self._hud_at = timeline
            first = f"{self.name}  {timeline:8.1f} s  {self._hud_latency}"
            second = f"drops {self.dropped}  {self.shared.hud_model}"
        else:
            total = f"/{self.expected}" if self.expected else ""
            first = f"{self.name}  {frame.pts:7.2f} s  frame {frame.index + 1}{total}"
            second = self.shared.hud_model
        status = self.shared.llm_status() if self.shared.llm_status else None
        return Hud(
            lines=(first, second), warning=self.shared.warning, status=status,
            alert=self._alert_banner(timeline),
        )  # fmt: skip


def _capacities(live: bool, queue_frames: int) -> tuple[int, int]:
    """(decoded, routed): how many frames wait to be routed, and how many routed ones wait to
    be written.

    A file stream's `2 × queue_frames` frames in flight mostly wait after the route, where the
    sampled ones have already gone to the analysis: the further a sampled frame is ahead of
    its writer, the longer the batcher can hold it for a fuller batch without the writer
    waiting (`streamer.analysis.service`, `hurry`).
    """
    if live:
        return LIVE_QUEUE, LIVE_QUEUE
    decoded = min(FILE_DECODED, queue_frames)
    return decoded, 2 * queue_frames - decoded
