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
  JSON Lines ending on a whole record), tell the observers; answers its summary.
- change: its analysis rate, from its next frame on.

One change runs at a time. The encoder service ends when its last lane closes; while a viewer
can add streams, a lane of the control's own stays open, so a run whose streams were all
removed keeps its encoder and waits for the next one (or its stop).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import asdict, replace
from typing import Any

from streamer.errors import ConfigError, StreamExistsError, UnknownStreamError
from streamer.outputs.options import OutputConfig
from streamer.report import stream_summary
from streamer.sources import open_source, redact, stream_names
from streamer.stream import StreamRun
from streamer.watch.web import WebViewer
from streamer.watch.web.stream_api import StreamRequest

__all__ = ["RunControl", "outputs_for"]

log = logging.getLogger("streamer")

KEEP_LANE = "\x00control"  # the control's own encoder lane (no stream can take this name)
RATE = "analysis.analyze_fps"
_OUTPUTS = {"outputs.video": "video", "outputs.srt": "srt", "outputs.vtt": "vtt",
            "outputs.jsonl": "jsonl"}  # fmt: skip


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
        self._stops: dict[str, asyncio.Event] = {}
        self._inputs = {name: redact(spec) for name, spec in stream_names(run.config.inputs)}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._emptied = False  # the last running stream was removed (not ended by itself)
        self._closed = False
        self._keep = any(isinstance(o, WebViewer) for o in run.observers.items)
        if self._keep:
            run.encoder.open_lane(KEEP_LANE, live=True)

    # -- the pipeline's side -------------------------------------------------------------------

    def start(self, stream: StreamRun) -> None:
        """Start a stream's tasks in the run's task group: source, route, deliver."""
        run, stop = self._run, asyncio.Event()
        if run.stop.is_set():
            stop.set()
        tap = run.recorder_for(stream.source)
        if tap is not None:
            run.recorders[stream.name] = tap
        self._stops[stream.name] = stop
        self._tg.create_task(run.runner.run(stream.source, stream.frames, stop, tap))
        self._tg.create_task(stream.route())
        task = self._tg.create_task(stream.deliver())
        task.add_done_callback(lambda _: self._changed.set())
        self._delivering[stream.name] = task

    async def wait(self) -> None:
        """Until no stream delivers any more: they all ended, or the run was told to stop.
        A run whose streams were all removed waits for a new one or for its stop."""
        follower = asyncio.create_task(self._follow_stop(), name="control-stop")
        try:
            while self._running() or (self._emptied and not self._run.stop.is_set()):
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._closed = True
            follower.cancel()
            if self._keep:
                self._run.encoder.close_lane(KEEP_LANE)

    async def _follow_stop(self) -> None:
        await self._run.stop.wait()
        for stop in self._stops.values():
            stop.set()
        self._changed.set()

    def _running(self) -> list[str]:
        return [name for name, task in self._delivering.items() if not task.done()]

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
            source = await asyncio.to_thread(
                open_source, spec, name, live=config.live, options=config.sources
            )  # a file is probed: not on the loop
            stream = StreamRun(source, source.live, outputs, run.shared)
            self._inputs[name] = redact(spec)
            run.shared.sampler.forget(name)
            if RATE in request.settings:
                run.shared.sampler.set_rate(name, request.settings[RATE])
            run.streams.append(stream)
            self.start(stream)
            self._emptied = False
            run.observers.stream_added(stream)
            if run.mqtt is not None:
                rules = tuple(r.query for r in config.alerts if r.watches(name))
                run.mqtt.add_stream(name, rules)
            log.info("%s: added (%s)", name, self._inputs[name])
            return self._describe(stream)

    async def remove(self, name: str) -> dict[str, Any]:
        """Stop a stream, finish its outputs and forget it; the others run on.

        Returns:
            Its summary (`streamer.report.StreamSummary` as a dict).

        Raises:
            UnknownStreamError: the run has no stream of that name.
        """
        async with self._lock:
            run = self._run
            stream = self._find(name)
            self._stops[name].set()
            await asyncio.wait([self._delivering[name]])  # its last frames written
            run.streams.remove(stream)
            stream.closed = True  # results still on their way are not recorded
            await asyncio.to_thread(stream.close)
            del self._delivering[name], self._stops[name]
            run.recorders.pop(name, None)
            run.shared.sampler.forget(name)
            self._emptied = not self._running()
            run.observers.stream_removed(stream)
            if run.mqtt is not None:
                run.mqtt.remove_stream(name)
            self._changed.set()
            summary = asdict(stream_summary(stream))
            log.info("%s: removed after %d frames", name, summary["frames"])
            return summary

    async def change(self, name: str, request: StreamRequest) -> dict[str, Any]:
        """Change a running stream's settings; they apply from its next frame on.

        Raises:
            UnknownStreamError: the run has no stream of that name.
        """
        async with self._lock:
            stream = self._find(name)
            if RATE in request.settings:
                self._run.shared.sampler.set_rate(name, request.settings[RATE])
                log.info("%s: analysis rate now %s", name, _rate(request.settings[RATE]))
            return self._describe(stream)

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
            "analyze_fps": _rate(self._run.shared.sampler.rate(stream.name)),
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


def outputs_for(
    run_outputs: OutputConfig, name: str, spec: str, settings: dict[str, Any],
    taken: dict[str, OutputConfig],
) -> OutputConfig:  # fmt: skip
    """A new stream's outputs: the run's `{stream}` templates (a path without one is the run's
    first stream's), and the paths its request gave (templates too); checked writable and used
    by none of the streams in `taken` (name → its outputs).

    Raises:
        ConfigError: an output that cannot be written, or that another stream writes.
    """
    kept = {f: _template(getattr(run_outputs, f)) for f in _OUTPUTS.values()}
    given = {field: settings[path] for path, field in _OUTPUTS.items() if path in settings}
    outputs = replace(run_outputs, **{**kept, **given}).for_stream(name)
    outputs.check([name], (spec,))
    owners = {os.path.realpath(path): other for other, its in taken.items()
              for path in its.paths()}  # fmt: skip
    for path in outputs.paths():
        other = owners.get(os.path.realpath(path))
        if other is not None:
            raise ConfigError(
                f"output {path!r} is written by stream {other!r}; give this stream its own "
                "(a path, or a template with {stream})"
            )
    return outputs


def _template(path: str | None) -> str | None:
    """The run's output path if it is a template for every stream, else None."""
    return path if path and "{stream}" in path else None


def _rate(fps: float | None) -> float | str:
    return "all" if fps is None else fps
