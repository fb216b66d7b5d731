"""The pipeline: every stage of every stream as a task in one TaskGroup.

::

    source (thread) ─► frames ─► route ─┬─► encoder service (a lane per stream) ─► analyse
      one per stream                    │     shared: fair batching, one encoder
                                        └─► outgoing ─► deliver: overlay + video/SRT/VTT/JSONL
                                                         (one writer thread per stream)

File streams deliver every frame, each with the analysis that covers it; live streams keep the
freshest frames and show the latest analysis (`streamer.stream`). A stream that fails or ends
never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamer.analysis.alerts import AlertDetector, check_alert_encoder
from streamer.analysis.analyzer import Analyzer, Vocabulary
from streamer.analysis.captioner import CaptionSchedule, LlmCaptioner, tag_caption
from streamer.analysis.labels import default_labels, prompts
from streamer.analysis.service import EncoderService
from streamer.analysis.text_cache import cached_text_embeddings
from streamer.archive.observer import ArchiveObserver, ClipNamer
from streamer.archive.recordings import Recorder
from streamer.config import RunConfig
from streamer.control import RunControl, offers_stream_api
from streamer.core import startup
from streamer.core.events import Observer, Observers
from streamer.core.frame import Annotation
from streamer.core.sampler import Sampler
from streamer.llm import CaptionClient, CaptionRequest
from streamer.llm import startup as llm_startup
from streamer.outputs.fanout import RANDOM_WEIGHTS_WARNING
from streamer.reload import Reloader
from streamer.report import Reporter, RunSummary, run_summary, stopped_before_start
from streamer.run_setup import (
    check_entry,
    decode_plan,
    give_up,
    observers_from_config,
    open_run,
    unless_stopped,
)
from streamer.sources import Source, SourceRunner, decoding
from streamer.stream import Analysis, AnalysisRequest, Shared, StreamRun
from streamer.watch.mqtt import MqttPublisher

if TYPE_CHECKING:
    from encoders import Encoder

log = logging.getLogger("streamer")

_OVER = ("ended", "failed")  # states a source does not leave


async def run_pipeline(
    config: RunConfig,
    *,
    encoder: Encoder | None = None,
    stop: asyncio.Event | None = None,
    progress: bool = False,
    observers: Sequence[Observer] = (),
    service: EncoderService | None = None,
    config_observers: bool = True,
    llm: CaptionClient | None = None,
    reloader: Reloader | None = None,
) -> RunSummary:
    """Run every input of `config` through the pipeline into its outputs; say what happened.

    Args:
        config: the run.
        encoder: an encoder already loaded (else `config.encoder` is loaded, in a thread).
        stop: set it to end early; outputs are finalised with what was written so far.
        progress: show progress on stderr (a bar for files, a status table for live streams).
        observers: also told what happens (`streamer.core.events`): a web viewer, a window, ...
        service: the encoder service to use (a cluster shard's: the pool), not one made here.
        config_observers: start the observers `config` asks for (viewer, webhook, ...); a
            cluster shard passes False: they run on its coordinator, fed by its `observers`.
        llm: with `config.llm` set, the client to caption with (a cluster shard's), not a new one.
        reloader: re-reads the run's `--config` file (SIGHUP, `POST /api/reload`) and changes
            the streams through the run's control while it runs.

    Returns:
        What happened. A live input (camera, URL) connects once the run has started and raises
        nothing: one that fails for good ends with its stream's `state` "failed", the others
        run on, and `summary.incomplete` names it and why (as for a file cut short).

    Raises:
        SourceError: a file input cannot be opened (before any output is created).
        ConfigError: an argument of the wrong type, or outputs unfit for the inputs (no work).
        EncoderError: the encoder cannot be loaded.
        SinkError: an output cannot be written.
    """
    observers = check_entry(config, stop, observers, serves=config_observers)
    joinable = reloader is not None or config.serve is not None or offers_stream_api(observers)
    started = time.monotonic()
    sources, hwaccel, service = await open_run(config, encoder, service, joinable, stop)
    if service is None:  # stopped while the model loaded: nothing was written
        return stopped_before_start(time.monotonic() - started)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(service.close)
        check_alert_encoder(config.alerts, service.model.kind, service.model.has_text)
        client = llm if config.llm is not None else None
        if client is None and config.llm is not None:  # after its start-up probe
            client = await _llm_client(config, stack, sources, stop)
        own = observers_from_config(config) if config_observers else []
        watchers = Observers([*own, *observers])
        plan = decode_plan(config, service.model, watchers, hwaccel, len(sources))
        runner = await stack.enter_async_context(
            decoding(sources, plan, config.sources.decode_workers)
        )
        run = _Run(config, sources, service, stop or asyncio.Event(), progress, client, watchers,
                   runner=runner)  # fmt: skip
        run.reloader = reloader
        return await run.run()


annotate_file = run_pipeline  # the name of the file-only first version


async def _llm_client(
    config: RunConfig, stack: contextlib.AsyncExitStack, sources: list[Source],
    stop: asyncio.Event | None,
) -> CaptionClient | None:  # fmt: skip
    """The run's LLM client. A file-only run waits for its start-up probe (up to its timeout
    when the server does not answer: the captions wait on it anyway) and gets None when `stop`
    comes first; a live run's video does not wait: the probe goes on beside it."""
    assert config.llm is not None
    with startup.phase("LLM client"):
        session = await stack.enter_async_context(llm_startup.client_session())
        live = any(s.live for s in sources)
        if live:
            client = llm_startup.new_client(config.llm, session)
            probing = llm_startup.open_llm_client(config.llm, session, live=True, client=client)
            stack.push_async_callback(give_up, asyncio.ensure_future(probing))
            return client
        probe = asyncio.ensure_future(llm_startup.open_llm_client(config.llm, session, live=live))
        client = await unless_stopped(probe, stop)
        await give_up(probe)
        return client


def _first_failure(exc: BaseException) -> BaseException:
    """The first real error inside a TaskGroup's exception group (else `exc` itself)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_failure(inner)
            if not isinstance(found, asyncio.CancelledError):
                return found
    return exc


class _Run:
    """State shared by the stages of one run."""

    def __init__(
        self, config: RunConfig, sources: list, encoder: EncoderService[AnalysisRequest],
        stop: asyncio.Event, progress: bool, client: CaptionClient | None = None,
        observers: Observers | None = None, *, runner: SourceRunner,
    ) -> None:  # fmt: skip
        self.config = config
        self.runner = runner  # who runs each source (this process or a decode worker), and how
        self.encoder = encoder
        self.stop = stop
        self.progress = progress
        self.schedule = CaptionSchedule(config.captions)
        self.client = client
        self.llm: LlmCaptioner | None = None  # made inside the TaskGroup its requests run in
        self.done = asyncio.Event()
        self.loop_lag_max_s = 0.0
        self.observers = observers if observers is not None else Observers()
        self.alerts: AlertDetector | None = None  # made at the start of `run`
        self.analyzer: Analyzer | None = None  # made at the start of `run`
        found = {type(o): o for o in self.observers.items}  # archive, MQTT: status reads them
        self.archive, self.mqtt = found.get(ArchiveObserver), found.get(MqttPublisher)
        self.clips = self.archive or found.get(ClipNamer)  # names each alert's clip
        self.recorders: dict[str, Recorder] = {}
        self.control: RunControl | None = None  # the viewer's stream API calls it
        self.reloader: Reloader | None = None  # re-reads --config (SIGHUP, POST /api/reload)
        self.notes: dict[str, str] = {}  # lines shown under the status table (the last reload)
        model = encoder.model
        warning = RANDOM_WEIGHTS_WARNING if model.random_weights else None
        if warning:
            log.warning("%s (%s %s)", warning, model.kind, model.name)
        self.shared = Shared(
            encoder=encoder, sampler=Sampler(config.analysis.analyze_fps),
            hud_model=f"{model.kind} {model.name}", warning=warning, started=time.monotonic(),
            queue_frames=config.queue_frames, copy_audio=config.outputs.copy_audio,
            caption_wait=config.caption_wait, stopping=stop,
            llm_status=(lambda: client.state_detail) if client is not None else None,
            observers=self.observers,
        )  # fmt: skip
        self.started = self.shared.started
        self.streams = self._open_streams(sources)

    def _open_streams(self, sources: list[Source]) -> list[StreamRun]:
        streams: list[StreamRun] = []
        try:
            for source in sources:
                outputs = self.config.outputs.for_stream(source.name)
                streams.append(StreamRun(source, source.live, outputs, self.shared))
        except BaseException:
            for stream in streams:
                stream.close()
            raise
        return streams

    async def run(self) -> RunSummary:
        with startup.phase("text embeddings"):  # once per label set and model, seconds
            texts = asyncio.ensure_future(self._texts())
            embedded = await unless_stopped(texts, self.stop)
        if embedded is None:  # stopped meanwhile: a first run's embeddings take seconds
            await give_up(texts)  # the encoder's thread finishes them for nobody
            self._close_streams()
            log.info("stopped before the labels were embedded: no frame was written")
            return stopped_before_start(time.monotonic() - self.started)
        vocabulary, self.alerts = embedded
        started = time.monotonic()  # the summary's fps is the streams', as the progress bar's
        self.analyzer = analyzer = Analyzer(vocabulary, self.config.analysis.top_k)
        try:
            await self.observers.start(self)
        except BaseException:
            self._close_streams(failing=True)  # no stage ran: close the files it opened
            raise
        try:
            await self._run_stages(analyzer)
        finally:
            await self.observers.stop()
        return self._summary(time.monotonic() - started)

    async def _texts(self) -> tuple[Vocabulary | None, AlertDetector | None]:
        return await self._vocabulary(), await self._alert_detector()

    async def _vocabulary(self) -> Vocabulary | None:
        model = self.encoder.model
        if not model.has_text:
            log.warning("%s has no text tower: no zero-shot tags, scene scores only", model.name)
            return None
        analysis = self.config.analysis
        labels = analysis.labels or default_labels()
        text = await cached_text_embeddings(
            analysis.text_cache, model.info, prompts(labels, analysis.prompt),
            self.encoder.embed_text,
        )  # fmt: skip
        return Vocabulary(labels, text, model.logit_scale)

    async def _alert_detector(self) -> AlertDetector | None:
        """The alert rules with their queries embedded as written (no prompt template)."""
        rules = self.config.alerts
        if not rules:
            return None
        text = await cached_text_embeddings(
            self.config.analysis.text_cache, self.encoder.model.info,
            [rule.query for rule in rules], self.encoder.embed_text,
        )  # fmt: skip
        return AlertDetector(rules, text)

    async def _run_stages(self, analyzer: Analyzer) -> None:
        try:
            await self._run_tasks(analyzer)
            for stream in self.streams:  # analysis is over: the alerts still on clear
                stream.end_alerts(self.alerts)
            await self.observers.finish()  # the outputs are open still: a file's summary
        except BaseException as exc:
            # The failure that stopped the run is the one to report: closing the files after it
            # (a full disk fails both) only logs its own errors.
            self._close_streams(failing=True)
            first = _first_failure(exc)
            if first is exc:
                raise
            raise first from None  # one stage's error, not the TaskGroup's wrapper
        self.encoder.close()  # nothing asks the model now: it is freed while the files close
        self._close_streams()

    def _close_streams(self, failing: bool = False) -> None:
        errors = []
        for stream in self.streams:
            try:
                stream.close()
            except Exception as exc:  # every stream is closed; the first error is raised
                errors.append(exc)
                if failing:
                    log.warning("%s", exc)
        if errors and not failing:
            raise errors[0]

    async def _run_tasks(self, analyzer: Analyzer) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.client is not None:
                assert self.config.llm is not None  # a client comes only with LLM settings
                self.llm = LlmCaptioner(self.client, self.config.llm_max_in_flight,
                                        tg.create_task, self.config.llm.slow_after)  # fmt: skip
            self.control = control = RunControl(self, tg)  # streams come and go through it
            await control.start_all(self.streams)  # each with its own settings of the config
            if self.reloader is not None:
                self.reloader.attach(control, self.notes)
            tg.create_task(self.encoder.run())
            tg.create_task(self._analyse(analyzer))
            tg.create_task(self._monitor())
            try:
                await control.wait()
            finally:
                self.done.set()
                if self.reloader is not None:
                    self.reloader.detach()
                if self.llm is not None:
                    self.llm.cancel()  # live requests still out: nobody will show them now

    def recorder_for(self, source: Source) -> Recorder | None:
        """With `--archive`, the recorder of a live stream (a camera or a network stream): its
        own packets remuxed where MP4 can hold them, else its frames encoded once; None for
        files (the index points at the file itself)."""
        archive = self.config.archive
        if archive is None or not source.connects or not source.live:
            return None
        return Recorder(archive.path, source.name, segment_s=archive.segment_s)

    async def _analyse(self, analyzer: Analyzer) -> None:
        async for batch in self.encoder.results():
            startup.mark(startup.LAST)
            for request, embedding in batch:
                name = request.stream.name
                annotation = analyzer.analyze(
                    name, request.frame.index, request.timeline, embedding
                )
                fired: list[str] = []
                if self.alerts is not None:
                    frame = request.frame
                    alerts, cleared = self.alerts.scan(
                        name, frame.index, request.timeline, embedding, frame.image
                    )
                    for alert in alerts:
                        if self.clips is not None:  # its clip's path goes with it
                            alert = self.clips.clip_alert(alert, frame)
                        request.stream.on_alert(alert)
                        fired.append(alert.query)
                    request.stream.on_cleared(cleared)
                self.observers.embedded(name, annotation, embedding, request.frame, tuple(fired))
                analysis = Analysis(annotation, None)
                if request.stream.captioned and self.schedule.due(annotation):
                    analyzer.set_reference(name, embedding)
                    analysis = self._caption(request, annotation)
                request.future.set_result(analysis)
                request.stream.on_analysis(analysis)

    def _caption(self, request: AnalysisRequest, annotation: Annotation) -> Analysis:
        """The analysis with its caption: from tags now, or asked of the LLM."""
        if self.llm is None:
            return Analysis(annotation, tag_caption(annotation))
        stream = request.stream
        tags = tuple(tag.label for tag in annotation.tags)
        when = time.time() if stream.live else request.timeline
        # No copy: the writer draws the overlay of a sampled frame on a copy of its own.
        ask = CaptionRequest(stream.name, when, tags, request.frame.image)
        if stream.live:
            self.llm.for_live(ask, annotation, stream.on_caption, stream.now)
            return Analysis(annotation, None)
        return Analysis(annotation, None, pending=self.llm.for_file(ask, annotation))

    async def _monitor(self) -> None:
        """Event-loop lag (a loop blocked for long is a bug), progress, status, state changes."""
        period = 0.1
        status_every, archive = self.config.status_every, self.archive
        reporter = None
        if self.progress:
            reporter = Reporter(self.streams, status_every, archive, self.mqtt, self.notes)
        states = {stream.name: None for stream in self.streams}
        while not self.done.is_set():
            before = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), period)
            self.loop_lag_max_s = max(self.loop_lag_max_s, time.monotonic() - before - period)
            self._record_state_changes(states)
            if self.archive is not None:
                self.archive.report_changes(self.streams)
            if reporter:
                reporter.tick()
        if reporter:
            reporter.tick(final=True)

    def _record_state_changes(self, states: dict) -> None:
        """A status record whenever a connecting source's state changes (files only play);
        a live stream that stops delivering frames has its alerts cleared."""
        for stream in self.streams:
            status = stream.source.status
            changed = states.get(stream.name) != status.state
            states[stream.name] = status.state
            if changed and stream.source.connects:
                stream.outputs.record({
                    "type": "status", "stream": stream.name, "state": status.state,
                    "wall": round(time.time(), 3), "offline_since": status.offline_since,
                    "reconnects": status.reconnects, "damaged": status.damaged,
                    "error": status.last_error,
                })  # fmt: skip
            # No more frames: its alerts clear; a live stream's at every tick once it has ended
            # for good (a file played live too): its last analyses may fire one after that. A
            # file read as a file clears at its end, after its last frame (`RunControl`).
            offline = changed and status.state == "offline"
            if (stream.live and status.state in _OVER) or (
                offline and (stream.live or stream.source.connects)
            ):
                stream.stopped_delivering(self.alerts, _why_stopped(status.state))

    def _summary(self, wall_s: float) -> RunSummary:
        return run_summary(
            self.streams, wall_s, stopped=self.stop.is_set(),
            random_weights=self.encoder.model.random_weights,
            loop_lag_max_s=self.loop_lag_max_s,
        )  # fmt: skip


def _why_stopped(state: str) -> str:
    """The reason a live stream's alerts clear when its source stops delivering frames."""
    return "ended" if state == "ended" else "offline"
