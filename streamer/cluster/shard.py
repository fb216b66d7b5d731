"""A shard: the streams one node owns, run by the one-process pipeline with the pool as encoder.

A shard is a Ray actor pinned to its node. Each `run` is one `run_pipeline` over some of the
run's streams (a file from the work queue, or the live streams given to this node): sources,
decoding, sampling, overlay and file outputs all stay on the node, and only analysis-size
frames go to the encoder pool (`streamer.cluster.pool`). The frames a shard has at the pool are
bounded for the whole shard (`InFlight`), whichever of its runs sent them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from streamer.analysis.service import ModelCard, ServiceLoad
from streamer.archive.observer import ClipNamer
from streamer.archive.summary_observer import SummaryObserver
from streamer.cluster.desk import DeskClient, DeskView
from streamer.cluster.pool import InFlight, PoolEncoderService
from streamer.cluster.relay import FrameRelay, Relay, RelayBatch
from streamer.config import RunConfig
from streamer.errors import UnknownStreamError
from streamer.outputs.keep import keep_outputs
from streamer.pipeline import run_pipeline
from streamer.report import RunSummary

__all__ = ["Shard"]

log = logging.getLogger("streamer")


class Shard:
    """The streams of one node (made an actor with `ray.remote` by the driver).

    Args:
        name: the shard's name (its lane at each encoder replica).
        replicas: the encoder pool's actor handles.
        model: the replicas' model card.
        in_flight: frames this shard may have at the pool at once.
        desk: the run's LLM desk (`streamer.cluster.desk`); None when the run has no LLM, or
            a file-only run's did not answer (its captions come from tags).
        desk_view: the desk's state when the run started.
    """

    def __init__(
        self, name: str, replicas: list[Any], model: ModelCard, in_flight: int,
        desk: Any = None, desk_view: DeskView | None = None,
    ) -> None:  # fmt: skip
        self._name = name
        self._desk = desk
        self._desk_view = desk_view
        self._llm: DeskClient | None = None  # made on first use, for every run of the shard
        self._replicas = replicas
        self._model = model
        self._in_flight_frames = in_flight
        self._in_flight: InFlight | None = None  # made on the actor's event loop
        self._stops: dict[str, asyncio.Event] = {}
        self._relays: dict[str, Relay] = {}  # job → its run's relay, until read after its end
        self._ended: list[str] = []
        self._services: dict[str, PoolEncoderService] = {}
        self._watched = False

    def node(self) -> str:
        """The Ray node id this shard runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    async def run(self, config: RunConfig, key: str, restarted: bool = False) -> RunSummary:
        """Run `config` (some of the run's streams, named as the whole run names them) here.

        Args:
            config: the streams and outputs; its `cluster` is None (this is one process).
            key: the job's name (its stream's), for `stop`.
            restarted: a live stream started again after its node was lost: what it wrote
                before is kept beside the new outputs (`NAME.keep-N.EXT`, N the first number
                free) rather than written over. False: a first run, or a file redone from
                its start.
        """
        if restarted:
            _keep_outputs(config, key)
        if self._in_flight is None:
            self._in_flight = InFlight(self._in_flight_frames)
        stop = self._stops[key] = asyncio.Event()
        service = PoolEncoderService(
            self._replicas, self._model, config.analysis.batch, self._in_flight, self._name
        )
        # The run's viewer and webhook are the coordinator's: a relay tells it what they need.
        embedded = config.archive is not None  # the coordinator indexes the moments
        relay = (
            FrameRelay(embedded=embedded) if config.serve is not None else Relay(embedded=embedded)
        )
        relay.watched = self._watched
        self._relays[key] = relay
        self._services[key] = service
        config, llm = self._captions(config)
        try:
            return await run_pipeline(
                config, stop=stop, service=service,
                observers=[*_summaries(config), *_clip_names(config), relay],
                config_observers=False, llm=llm,
            )  # fmt: skip
        finally:
            self._stops.pop(key, None)
            self._services.pop(key, None)
            self._ended.append(key)  # its relay goes once its last events are read

    def _captions(self, config: RunConfig) -> tuple[RunConfig, DeskClient | None]:
        """The run's LLM is the desk's (no shard asks the server itself); without a desk a run
        with `--llm-url` captions from tags, as one process does when its server is away."""
        if config.llm is None:
            return config, None
        if self._desk is None or self._desk_view is None:
            return dataclasses.replace(config, llm=None), None
        if self._llm is None:
            self._llm = DeskClient(self._desk, config.llm, self._desk_view)
        return config, self._llm

    async def drain(self, watched: bool) -> tuple[list[RelayBatch], Any]:
        """What every run's relay holds (their streams now, events since the last drain, frames
        while `watched`), and this shard's view of the encoder pool's load."""
        self._watched = watched
        for relay in self._relays.values():
            relay.watched = watched
        ended, self._ended = self._ended, []
        batches = [await relay.read() for relay in list(self._relays.values())]
        for key in ended:
            self._relays.pop(key, None)
        loads = [service.load() for service in self._services.values()]
        return batches, ServiceLoad.total(loads) if loads else None

    async def stop(self) -> None:
        """Tell every run of this shard to stop: each finishes its outputs and returns (on the
        actor's event loop, where the runs wait on their events)."""
        for stop in self._stops.values():
            stop.set()

    async def stop_job(self, key: str) -> None:
        """Tell one run to stop (the stream API removed its stream); the others go on."""
        stop = self._stops.get(key)
        if stop is not None:
            stop.set()

    async def change(self, key: str, request: Any) -> dict[str, Any]:
        """Change a running stream's settings (the stream API's PATCH), through its run's own
        control, as in one process.

        Raises:
            UnknownStreamError: job `key` does not run here (it ended, or has not started).
        """
        relay = self._relays.get(key)
        control = getattr(relay.run, "control", None) if relay is not None else None
        if control is None or key not in self._stops:
            raise UnknownStreamError(f"stream {key!r} is not running now (it starts, or ended)")
        return await control.change(key, request)  # a job's key is its stream's name


def _summaries(config: RunConfig) -> list[SummaryObserver]:
    """With `--summary`/`--summary-every`, the stream's summaries are made where it runs, as in
    one process: from its moments and captions, asked of the LLM through the desk, written to
    its JSON Lines and beside its video. The relay carries each to the coordinator, which
    stores it in the archive (the index's one writer) and shows it."""
    archive = config.archive
    if archive is None or (archive.summary_every_s is None and not archive.summary):
        return []
    return [SummaryObserver(archive, _StoredByTheCoordinator(), config.captions.scene_threshold)]


def _clip_names(config: RunConfig) -> list[ClipNamer]:
    """With --archive, each alert's clip is named here as it fires (its JSON Lines record
    says where the clip is, as in one process); the coordinator cuts it under that name."""
    return [ClipNamer()] if config.archive is not None else []


class _StoredByTheCoordinator:
    """The archive as a shard's `SummaryObserver` sees it: adding a summary here does nothing,
    the coordinator adds it when the relay brings it (`Coordinator.take`)."""

    @property
    def archive(self) -> _StoredByTheCoordinator:
        return self

    def add_summaries(self, summaries: list) -> None:
        return None


def _keep_outputs(config: RunConfig, stream: str) -> None:
    """Move the outputs a lost run of `stream` left (where this node sees them: a shared
    filesystem) out of the new run's way, so that nothing it wrote is lost."""
    keep_outputs(stream, config.outputs.for_stream(stream).paths())
