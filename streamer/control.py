"""Streams joining, leaving and changing while a one-process run runs (the HTTP API's work).

The pipeline starts every stream through `RunControl.start` and waits on `RunControl.wait`; the
viewer's stream API (`streamer.watch.web.stream_api`) calls `add`, `remove` and `change` on the
same object, handed to it as `run.control`. What each does, never pausing the other streams:

- add: open the source with the checks of a run's start (a bad spec or an output that cannot
  be written is refused before anything is made), make its outputs, start its three tasks
  (source, route, deliver) in the run's task group, tell the observers (viewer, /metrics and
  MQTT read `run.streams`; `stream_added`, `MqttPublisher.add_stream`).
- remove: stop that stream's source only (each stream has its own stop, set also when the run
  stops), let its last frames through, finish its outputs (a playable MP4, complete subtitles,
  JSON Lines ending on a whole record), tell the observers; answers its summary. Its last
  frames get `REMOVE_TIMEOUT_S`: past it (a camera that does not answer its stop, analysis or
  an LLM caption that does not come) its tasks are cancelled and its outputs finished as they
  are, ending on the last frame written; the summary says so (`cancelled`).
- change: its analysis rate, its zero-shot labels, its set of alerts, its captions on or off,
  from its next analysed frame on. New label and query texts are embedded first, through the
  encoder service's thread (its text cache too), so nothing changes when that fails and the
  loop never waits on the model; then every setting is applied at once. Labels are a
  vocabulary of the stream's own (`Analyzer.use`), alerts a rule set of its own
  (`AlertDetector.set_rules`: a rule kept keeps its state); both can also come with an add.

One change runs at a time. The encoder service ends when its last lane closes; while a viewer
can add streams, a lane of the control's own stays open, so a run whose streams were all
removed keeps its encoder and waits for the next one (or its stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.analysis.alerts import AlertDetector, AlertRule
from streamer.analysis.analyzer import Vocabulary
from streamer.analysis.labels import prompts
from streamer.analysis.text_cache import cached_text_embeddings
from streamer.core.events import Observer
from streamer.errors import ConfigError, StreamExistsError, UnknownStreamError
from streamer.outputs.options import OutputConfig, outputs_for
from streamer.report import stream_summary
from streamer.sources import open_source, redact, stream_names
from streamer.stream import StreamRun

if TYPE_CHECKING:
    from streamer.watch.web.stream_body import StreamRequest

__all__ = ["REMOVE_TIMEOUT_S", "RunControl"]

log = logging.getLogger("streamer")

REMOVE_TIMEOUT_S = 10.0
"""Seconds a removed stream's last frames have to go through before it is cancelled."""
KEEP_LANE = "\x00control"  # the control's own encoder lane (no stream can take this name)
RATE, LABELS, ALERTS, CAPTIONS = "analysis.analyze_fps", "analysis.labels", "alerts", "captions"


class RunControl:
    """The streams of one running run: started, waited for, added, removed and changed.

    Args:
        run: the pipeline's run (`streamer.pipeline._Run`, not imported: the pipeline imports
            this module): its streams, shared parts, runner, observers and stop.
        tg: the run's task group, where every stream's tasks run.
    """

    def __init__(self, run: Any, tg: asyncio.TaskGroup) -> None:
        self._run = run
        self._tg = tg
        self._delivering: dict[str, asyncio.Task] = {}
        self._feeding: dict[str, tuple[asyncio.Task, ...]] = {}  # its source and route tasks
        self._removing: set[str] = set()  # being removed: the run waits for the removal
        self._stops: dict[str, asyncio.Event] = {}
        self._inputs = {name: redact(spec) for name, spec in stream_names(run.config.inputs)}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._emptied = False  # the last running stream was removed (not ended by itself)
        self._held = 0  # changes in progress (a reload) that the run must not end under
        self._closed = False
        self._keep = offers_stream_api(run.observers.items)
        if self._keep:
            run.encoder.open_lane(KEEP_LANE, live=True)

    # -- the pipeline's side -------------------------------------------------------------------

    async def start_all(self, streams: list[StreamRun]) -> None:
        """Start the run's own streams, each with the settings the configuration gives it
        (`RunConfig.stream_settings`: embedded first, in force from its first frame)."""
        run = self._run
        for stream in list(streams):
            settings = run.config.stream_settings.get(stream.name)
            if settings:
                settle = await self._prepare(stream.name, settings)
                settle(stream)
                if ALERTS in settings and run.mqtt is not None:
                    run.mqtt.set_alerts(stream.name, self._rules(stream.name))
            self.start(stream)

    def start(self, stream: StreamRun) -> None:
        """Start a stream's tasks in the run's task group: source, route, deliver."""
        run, stop = self._run, asyncio.Event()
        if run.stop.is_set():
            stop.set()
        tap = run.recorder_for(stream.source)
        if tap is not None:
            run.recorders[stream.name] = tap
        self._stops[stream.name] = stop
        self._feeding[stream.name] = (
            self._tg.create_task(run.runner.run(stream.source, stream.frames, stop, tap)),
            self._tg.create_task(stream.route()),
        )
        task = self._tg.create_task(self._deliver(stream))
        task.add_done_callback(lambda _: self._changed.set())
        self._delivering[stream.name] = task

    async def _deliver(self, stream: StreamRun) -> None:
        """Deliver a stream's frames. A file's alerts still on at its end clear then (all of
        its frames' are reported by then); a live stream's last analyses come after: its
        clear at the run's end (`_Run`) or its removal."""
        await stream.deliver()
        if not stream.live:
            stream.end_alerts(self._run.alerts)

    async def wait(self) -> None:
        """Until no stream delivers any more: they all ended, or the run was told to stop.
        A run whose streams were all removed waits for a new one or for its stop."""
        follower = asyncio.create_task(self._follow_stop(), name="control-stop")
        try:
            while self._running() or self._held or (self._emptied and not self._run.stop.is_set()):
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._closed = True
            follower.cancel()
            if self._keep:
                self._run.encoder.close_lane(KEEP_LANE)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The run does not end while this is open, even with no stream left running (a
        reload: the stream it put on a new input failed; it goes back on its old one)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            self._changed.set()

    async def _follow_stop(self) -> None:
        await self._run.stop.wait()
        for stream in self._run.streams:  # its alerts still on clear as "stopped"
            stream.ending = stream.ending or "stopped"
        for stop in self._stops.values():
            stop.set()
        self._changed.set()

    def _running(self) -> list[str]:
        """The streams that deliver, and those being removed (a run whose last stream is
        being removed must not end before the removal says whether it was the last)."""
        return [name for name, task in self._delivering.items()
                if not task.done() or name in self._removing]  # fmt: skip

    # -- the API's side ------------------------------------------------------------------------

    def streams(self) -> list[dict[str, Any]]:
        """Every stream of the run and its settings, as the API shows them."""
        return [self._describe(stream) for stream in self._run.streams]

    async def add(self, request: StreamRequest) -> dict[str, Any]:
        """Add a stream and start it.

        Raises:
            StreamExistsError: a stream of that name runs.
            ConfigError, SourceError: the request cannot be run (an output that cannot be
                written or is another stream's, an input that cannot be opened).
        """
        assert request.name is not None and request.input is not None, "parse_body checks"
        async with self._lock:
            self._check_open()
            run, name = self._run, request.name
            if any(stream.name == name for stream in run.streams):
                raise StreamExistsError(f"name: a stream named {name!r} runs already; choose "
                                        "another name, or DELETE it first")  # fmt: skip
            spec, config = request.input, run.config
            outputs = self._outputs(name, spec, request.settings)
            self._forget(name)  # a stream of that name that was removed before
            settle = await self._prepare(name, request.settings)
            source = await asyncio.to_thread(
                open_source, spec, name, live=config.live, options=config.sources
            )  # a file is probed: not on the loop
            stream = StreamRun(source, source.live, outputs, run.shared)
            self._inputs[name] = redact(spec)
            settle(stream)
            run.streams.append(stream)
            self.start(stream)
            self._emptied = False
            run.observers.stream_added(stream)
            if run.mqtt is not None:
                run.mqtt.set_alerts(name, self._rules(name))
            log.info("%s: added (%s)", name, self._inputs[name])
            return self._describe(stream)

    async def remove(self, name: str) -> dict[str, Any]:
        """Stop a stream, finish its outputs and forget it; the others run on.

        Returns:
            Its summary (`streamer.report.StreamSummary` as a dict); with `cancelled`, why its
            last frames were cut short, when they did not go through within
            `REMOVE_TIMEOUT_S`.

        Raises:
            UnknownStreamError: the run has no stream of that name.
        """
        async with self._lock:
            run = self._run
            stream = self._find(name)
            self._removing.add(name)
            try:
                cut = await self._finish(name, stream)
            finally:
                self._removing.discard(name)
                self._changed.set()
            run.recorders.pop(name, None)
            self._forget(name)
            self._emptied = not self._running()
            run.observers.stream_removed(stream)
            if run.mqtt is not None:
                run.mqtt.remove_stream(name)
            self._changed.set()
            summary = asdict(stream_summary(stream))
            # As /api/status shows it: named percentiles, 0.1 ms (NaN, before a frame: null)
            p50, p95, p99 = (round(ms, 1) for ms in summary["latency_ms"])
            summary["latency_ms"] = {"p50": p50, "p95": p95, "p99": p99}
            if cut:
                summary["cancelled"] = (
                    f"its last frames did not go through within {REMOVE_TIMEOUT_S:g} s of its "
                    "stop (a source, analysis or caption that did not answer): it was "
                    f"cancelled, its files end on the last frame written ({summary['frames']})"
                )
                log.warning("%s: removed: %s", name, summary["cancelled"])
            else:
                log.info("%s: removed after %d frames", name, summary["frames"])
            return summary

    async def _finish(self, name: str, stream: StreamRun) -> bool:
        """Stop a stream, let its last frames through (bounded), close its outputs; True when
        it was cancelled."""
        stream.ending = "removed"
        self._stops[name].set()
        cut = await self._last_frames(name)
        self._run.streams.remove(stream)
        stream.end_alerts(self._run.alerts)  # its last records, before its files close
        stream.closed = True  # results still on their way are not recorded
        await asyncio.to_thread(stream.close)
        del self._delivering[name], self._stops[name], self._feeding[name]
        return cut

    async def _last_frames(self, name: str) -> bool:
        """Wait up to `REMOVE_TIMEOUT_S` for a stopped stream's last frames to be written;
        past it cancel its tasks (a write in flight still ends: its thread is not
        interrupted). True when it was cancelled."""
        delivering = self._delivering[name]
        done, _ = await asyncio.wait([delivering], timeout=REMOVE_TIMEOUT_S)
        if done:
            return False
        for task in (*self._feeding[name], delivering):
            task.cancel()  # the source and route tasks end in their own time
        await asyncio.wait([delivering])  # at once, or once a write in flight is done
        return True

    async def change(self, name: str, request: StreamRequest) -> dict[str, Any]:
        """Change a running stream's settings; they apply from its next frame on.

        Raises:
            UnknownStreamError: the run has no stream of that name.
        """
        async with self._lock:
            stream = self._find(name)
            settle = await self._prepare(name, request.settings)
            settle(stream)
            if ALERTS in request.settings and self._run.mqtt is not None:
                self._run.mqtt.set_alerts(name, self._rules(name))
            for key, value in request.settings.items():
                log.info("%s: %s now %s", name, key.rsplit(".", 1)[-1], _shown(value))
            return self._describe(stream)

    async def _prepare(self, name: str, settings: dict[str, Any]) -> Callable[[StreamRun], None]:
        """Embed what `settings` needs embedded (off the loop); answers what applies them all
        at once to the stream. Nothing is changed until then, so a failure changes nothing.

        A None labels or alerts value gives the stream the run's again (a reload whose file
        no longer gives the stream its own).

        Raises:
            ConfigError: labels or alerts for an encoder with no text tower.
        """
        run = self._run
        vocabulary, rules, embeddings = None, None, None
        own = [settings.get(key) for key in (LABELS, ALERTS)]
        if any(value is not None for value in own) and not run.encoder.model.has_text:
            raise ConfigError(
                f"labels and alerts are compared with text, and the {run.encoder.model.kind} "
                "encoder has no text tower: run with --encoder clip to change them"
            )
        if settings.get(LABELS) is not None:
            labels = settings[LABELS]
            text = await self._embed(prompts(labels, run.config.analysis.prompt))
            vocabulary = Vocabulary(labels, text, run.encoder.model.logit_scale)
        if settings.get(ALERTS) is not None:
            given = run.config.alert_settings
            rules = tuple(spec.rule(name, given) for spec in settings[ALERTS])
            embeddings = await self._embed([rule.query for rule in rules])

        def settle(stream: StreamRun) -> None:
            if ALERTS in settings and run.alerts is not None:  # the ones it drops go off
                keep = rules if rules is not None else run.alerts.rules_of(name)
                stream.end_alerts(run.alerts, "removed", keep)
            if RATE in settings:
                run.shared.sampler.set_rate(name, settings[RATE])
            if LABELS in settings and run.analyzer is not None:
                run.analyzer.use(name, vocabulary)  # None: the run's
            if ALERTS in settings and rules is None and run.alerts is not None:
                run.alerts.forget(name)  # the run's rules that watch it, from its next frame
            if rules is not None:
                if run.alerts is None:  # the run had no alert: a detector for the streams' own
                    run.alerts = AlertDetector((), np.zeros((0, embeddings.shape[1]), np.float32))
                run.alerts.set_rules(name, rules, embeddings)
            if CAPTIONS in settings:
                stream.captioned = settings[CAPTIONS]

        return settle

    async def _embed(self, texts: list[str]) -> np.ndarray:
        """Text embeddings through the encoder service's thread and the run's text cache."""
        run = self._run
        if not texts:
            return np.zeros((0, run.encoder.model.info.dim), np.float32)
        return await cached_text_embeddings(
            run.config.analysis.text_cache, run.encoder.model.info, texts, run.encoder.embed_text
        )

    def _rules(self, name: str) -> tuple[AlertRule, ...]:
        alerts = self._run.alerts
        if alerts is not None:
            return alerts.rules_for(name)
        return tuple(rule for rule in self._run.config.alerts if rule.watches(name))

    def _forget(self, name: str) -> None:
        """Drop the per-stream state of the analysis for `name` (a stream gone or new)."""
        run = self._run
        run.shared.sampler.forget(name)
        run.schedule.forget(name)
        if run.analyzer is not None:
            run.analyzer.forget(name)
        if run.alerts is not None:
            run.alerts.forget(name)

    # -- helpers -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._run.stop.is_set():
            raise ConfigError("the run is stopping: it takes no new stream")

    def _find(self, name: str) -> StreamRun:
        for stream in self._run.streams:
            if stream.name == name:
                return stream
        names = ", ".join(s.name for s in self._run.streams) or "none"
        raise UnknownStreamError(f"no stream named {name!r} (the run's streams: {names})")

    def _outputs(self, name: str, spec: str, settings: dict[str, Any]) -> OutputConfig:
        taken = {stream.name: stream.outputs.config for stream in self._run.streams}
        return outputs_for(self._run.config.outputs, name, spec, settings, taken)

    def _describe(self, stream: StreamRun) -> dict[str, Any]:
        outputs = stream.outputs.config
        return {
            "name": stream.name,
            "input": self._inputs.get(stream.name),
            "live": stream.live,
            "state": "ended" if stream.closed else stream.source.status.state,
            "error": stream.source.status.last_error,
            "analyze_fps": _rate(self._run.shared.sampler.rate(stream.name)),
            "labels": self._labels(stream.name),
            "alerts": [_alert(rule) for rule in self._rules(stream.name)],
            "captions": "on" if stream.captioned else "off",
            "outputs": {
                "video": outputs.video,
                "srt": outputs.srt,
                "vtt": outputs.vtt,
                "jsonl": outputs.jsonl,
            },
            "frames": {
                "decoded": stream.stats.decoded,
                "analysed": stream.stats.analysed,
                "delivered": stream.stats.delivered,
                "dropped": stream.dropped,
            },
        }

    def _labels(self, name: str) -> list[str] | None:
        """The stream's own labels; None while it has the run's (often hundreds)."""
        analyzer = self._run.analyzer
        if analyzer is None or analyzer.vocabulary_of(name) is analyzer.vocabulary:
            return None
        vocabulary = analyzer.vocabulary_of(name)
        return list(vocabulary.labels) if vocabulary is not None else None


def offers_stream_api(observers: Iterable[Observer]) -> bool:
    """Whether a viewer among `observers` serves the stream API, through which streams join
    the run while it runs. (No viewer was made unless its module, and aiohttp with it, was
    loaded: a run without one does not load them to find out.)"""
    server = sys.modules.get("streamer.watch.web.server")
    return server is not None and any(isinstance(o, server.WebViewer) for o in observers)


def _alert(rule: AlertRule) -> dict[str, Any]:
    """A rule as a body gives it (its settings under their options' keys)."""
    return {"query": rule.query, "alert-threshold": rule.threshold,
            "alert-frames": rule.frames, "alert-cooldown": rule.cooldown_s}  # fmt: skip


def _shown(value: Any) -> str:
    """A setting's new value as the log says it."""
    if value is True or value is False:
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ", ".join(getattr(v, "query", v) for v in value) or "none"
    return str(_rate(value))


def _rate(fps: float | None) -> float | str:
    return "all" if fps is None else fps
