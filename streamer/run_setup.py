"""What a run opens before its stages start: the sources, the encoder service (its model loading
on a thread meanwhile), the decode plan and the observers the configuration asks for.

`streamer.pipeline` calls these in order; a cluster coordinator uses `observers_from_config`
for the observers it runs on behalf of its shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, TypeVar

from streamer.analysis.alerts import check_alert_encoder, check_rule_streams
from streamer.analysis.loading import abandon
from streamer.analysis.loading import start_local_encoder_service as start_encoder_service
from streamer.analysis.service import EncoderService, ModelCard
from streamer.archive import preload as preload_archive
from streamer.archive.observer import ArchiveObserver
from streamer.archive.summary_observer import SummaryObserver
from streamer.config import RunConfig
from streamer.core import startup
from streamer.core.events import Observer, Observers
from streamer.core.options import wrong_type
from streamer.errors import ConfigError
from streamer.llm import startup as llm_startup
from streamer.outputs.lock import OutputLocks
from streamer.sources import Source, files_only, open_source, stream_names
from streamer.sources.hwaccel import resolve_hwaccel
from streamer.sources.options import AnalysisSize, DecodePlan, decode_threads
from streamer.watch.mqtt import MqttPublisher
from streamer.watch.webhook import WebhookSender
from streamer.watch.window import WindowViewer

if TYPE_CHECKING:
    from encoders import Encoder

__all__ = ["check_entry", "check_stop", "decode_plan", "give_up", "observers_from_config",
           "open_run", "open_sources", "unless_stopped"]  # fmt: skip

T = TypeVar("T")

log = logging.getLogger("streamer")


def check_entry(
    config: object, stop: object, observers: object, *, serves: bool = True
) -> tuple[Observer, ...]:
    """Refuse, before any work, arguments of a run's entry (`run_pipeline`) of the wrong type,
    and (`serves`: this process runs the viewer) a `--serve` address nothing can listen on
    now (the viewer listens only after the model's load); the observers as a tuple.

    Raises:
        ConfigError: naming the argument, what it got and what it takes.
    """
    if not isinstance(config, RunConfig):
        raise wrong_type("config", "a RunConfig", config,
                         fix="RunConfig(input=..., outputs=OutputConfig(...))")  # fmt: skip
    check_stop(stop)
    if not isinstance(observers, list | tuple):
        raise wrong_type("observers", "a list of Observer (streamer.core.events)", observers,
                         fix="observers=() for none")  # fmt: skip
    for i, observer in enumerate(observers):
        if not isinstance(observer, Observer):
            raise wrong_type(f"observers[{i}]", "an Observer", observer,
                             fix="subclass streamer.core.events.Observer and override the "
                             "hooks you need")  # fmt: skip
    if serves and config.serve is not None:
        config.serve.check_free()
    if config.mqtt is not None:  # before the model's load, not after it
        from streamer.watch.mqtt.options import require_aiomqtt

        require_aiomqtt()
    return tuple(observers)


def check_stop(stop: object) -> None:
    """Refuse a `stop` that is not an `asyncio.Event`: a `threading.Event`'s `wait()` would
    block the event loop for good.

    Raises:
        ConfigError: naming asyncio.Event and how to set one from another thread.
    """
    if stop is not None and not isinstance(stop, asyncio.Event):
        raise wrong_type("stop", "an asyncio.Event or None", stop,
                         fix="make an asyncio.Event in the run's event loop; from another "
                         "thread, set it with loop.call_soon_threadsafe(stop.set)")  # fmt: skip


async def open_run(
    config: RunConfig, encoder: Encoder | None, service: EncoderService | None, joinable: bool,
    stop: asyncio.Event | None = None,
) -> tuple[list[Source], str | None, EncoderService | None]:  # fmt: skip
    """The sources, the hardware decoder and the encoder service, whose model loads on a thread
    meanwhile: at low priority when only files run and no stream can join (`joinable`: a
    viewer's stream API, a --config reload), as a priority once lowered stays lowered.

    The service is None when `stop` was set before the model was ready (a Ctrl-C during a
    first run's export): the load is abandoned then, not waited for, and nothing was written.
    """
    if config.cluster is not None:
        raise ConfigError("this configuration runs on a cluster (cluster is set): run it with "
                          "streamer.cluster.run_cluster(config), or leave cluster out")  # fmt: skip
    background = files_only(config.inputs, config.live) and not joinable
    loading = None if service is not None else start_encoder_service(
        config.encoder, config.analysis.batch, encoder, background=background)  # fmt: skip
    try:
        with startup.phase("source open"):
            # In a thread: an HLS playlist URL is fetched to tell whether it is finished.
            sources = await asyncio.to_thread(open_sources, config, encoder)
        hwaccel = resolve_hwaccel(config.sources.hwaccel)  # `cuda` without CUDA fails here
        if config.archive is not None:
            preload_archive()  # LanceDB's import, while the encoder loads
        if config.llm is not None:
            llm_startup.preload()  # aiohttp's, likewise
        if loading is not None:
            service = await unless_stopped(loading, stop)
            if service is None:
                abandon(loading)
                log.info("stopped before the model was ready: no output was begun")
        return sources, hwaccel, service
    except BaseException:
        abandon(loading)
        raise


async def unless_stopped(work: asyncio.Future[T], stop: asyncio.Event | None) -> T | None:
    """What `work` gives, once done; None when `stop` is set first (`work` is left running:
    the caller gives it up as it must)."""
    if stop is None:
        return await work
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    return work.result() if work.done() else None


async def give_up(work: asyncio.Future) -> None:
    """Cancel `work` unless it is done, and wait for it to end (a task's `finally` runs)."""
    if not work.done():
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work


def open_sources(config: RunConfig, encoder: Encoder | None) -> list[Source]:
    """The run's sources, after every check that needs no model (before any output exists)."""
    check_alert_encoder(config.alerts, config.encoder.kind,
                        encoder.has_text if encoder is not None else None)  # fmt: skip
    sources: list[Source] = [
        open_source(spec, name, live=config.live, options=config.sources)
        for name, spec in stream_names(config.inputs)
    ]
    config.outputs.check([s.name for s in sources], config.inputs)
    for source in sources:  # taken by another run: said now, not once the model has loaded
        OutputLocks(source.name, config.outputs.for_stream(source.name).paths()).acquire().release()
    check_rule_streams(config.alerts, [s.name for s in sources])
    return sources


def decode_plan(
    config: RunConfig, model: ModelCard, watchers: Observers, hwaccel: str | None, streams: int
) -> DecodePlan:
    """What the decode threads make of each frame (`streamer.sources.DecodePlan`): full-size
    RGB only when something draws every frame; analysed frames at the encoder's input size."""
    draws = (
        config.outputs.video is not None
        or config.serve is not None
        or bool(config.show)
        or any(type(o).wants_frames is not Observer.wants_frames for o in watchers.items)
    )
    cfg = model.preprocess
    return DecodePlan(
        full_frames=draws,
        analysis=AnalysisSize.from_preprocess(cfg) if cfg is not None else None,
        analyze_fps=config.analysis.analyze_fps,
        # A caption request sends the LLM a JPEG of the frame, an alert keeps it as snapshot.
        full_analysed=config.llm is not None or bool(config.alerts),
        threads=decode_threads(streams),
        hwaccel=hwaccel,
    )


def observers_from_config(config: RunConfig) -> list[Observer]:
    """The observers the configuration asks for (web viewer, window, webhook, MQTT)."""
    observers: list[Observer] = []
    if config.serve:
        from streamer.watch.web import WebViewer  # aiohttp's web server: only when served

        archive = config.archive.path if config.archive else None
        observers.append(WebViewer(config.serve, archive=archive, llm=config.llm))
    if config.show:
        observers.append(WindowViewer.from_config(config.show))
    if config.webhook:
        observers.append(WebhookSender(config.webhook))
    if config.mqtt:
        observers.append(MqttPublisher(config.mqtt))
    if config.archive:
        weights, threshold = config.encoder.weights, config.captions.scene_threshold
        archive = ArchiveObserver(config.archive, weights, threshold)
        observers.append(archive)
        if config.archive.summary_every_s is not None or config.archive.summary:
            observers.append(SummaryObserver(config.archive, archive, threshold))
    return observers
