"""The stream API on a cluster run: streams added, removed and changed while it runs.

The coordinator's viewer serves the same routes as one process (`streamer.watch.web.
stream_api`); on a cluster they reach this object as `run.control`:

- add: the stream becomes a job like the run's own (its configuration made by the same
  rules, its pin from --pin), handed to the schedule, which starts it on a shard within a
  second; the coordinator shows it from then on.
- remove: its shard stops that job alone (its outputs finished, as in one process); the
  coordinator forgets it; answers its summary.
- change: sent to the shard that runs it, where the stream's own run applies it through its
  control (`streamer.control.RunControl.change`); kept in the job's configuration
  (`RunConfig.stream_settings`, with what an add gave), so a restart after a lost node starts
  the stream with every setting it was given (rate, labels, alerts, captions).

A stream's input is not opened here (a camera may be reachable from its node only): a file
must exist, a live input shows its state as the shard reaches it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import Any

from streamer import control as one_process  # REMOVE_TIMEOUT_S, read when used
from streamer.cluster.coordinator import Coordinator, RemoteStream
from streamer.cluster.jobs import Job, is_live, job_config
from streamer.control import ALERTS, CAPTIONS, LABELS, RATE
from streamer.errors import (
    ConfigError,
    SourceNotFoundError,
    StreamExistsError,
    UnknownStreamError,
)
from streamer.outputs.options import outputs_for
from streamer.sources import redact
from streamer.sources.names import spec_kind
from streamer.watch.web.stream_api import StreamRequest

__all__ = ["ClusterControl"]

log = logging.getLogger("streamer")


class ClusterControl:
    """What the coordinator's viewer calls to change the streams of a cluster run.

    Args:
        driver: the run's driver (`streamer.cluster.driver._ClusterRun`, not imported: it
            imports this module): its jobs, `add_job`, `remove_job`, config and stop.
        coordinator: the run's coordinator (what the observers show).
    """

    def __init__(self, driver: Any, coordinator: Coordinator) -> None:
        self._driver = driver
        self._coordinator = coordinator
        self._lock = asyncio.Lock()

    def streams(self) -> list[dict[str, Any]]:
        """Every stream of the run and its settings, as the API shows them."""
        return [self._describe(job) for job in self._driver.jobs()]

    async def add(self, request: StreamRequest) -> dict[str, Any]:
        """Add a stream; a shard starts it within a second.

        Raises:
            StreamExistsError: a stream of that name is in the run.
            ConfigError: the run is stopping, or an output cannot be written or is another's.
            SourceNotFoundError: a file that does not exist.
        """
        assert request.name is not None and request.input is not None, "parse_body checks"
        async with self._lock:
            driver, name, spec = self._driver, request.name, request.input
            if driver.stop.is_set():
                raise ConfigError("the run is stopping: it takes no new stream")
            jobs = {job.key: job for job in driver.jobs()}
            if name in jobs:
                raise StreamExistsError(f"name: a stream named {name!r} runs already; choose "
                                        "another name, or DELETE it first")  # fmt: skip
            if spec_kind(spec) == "file" and not os.path.exists(spec):
                raise SourceNotFoundError(f"{spec}: no such file")
            config = driver.config
            taken = {key: job.config.outputs.for_stream(key) for key, job in jobs.items()}
            outputs = outputs_for(config.outputs, name, spec, request.settings, taken)
            made = job_config(dataclasses.replace(config, outputs=outputs), name, spec)
            job = Job(name, spec, is_live(spec, config.live), _with(made, name, request.settings),
                      config.cluster.pin_of(name))  # fmt: skip
            stream = RemoteStream(name, job.live, job.connects, job.path)
            alerts = tuple(rule.query for rule in made.alerts)
            if ALERTS in request.settings:  # its own set
                alerts = tuple(spec.query for spec in request.settings[ALERTS])
            self._coordinator.add(stream, alerts)
            driver.add_job(job)
            log.info("%s: added (%s)", name, redact(spec))
            return self._describe(job)

    async def remove(self, name: str) -> dict[str, Any]:
        """Stop a stream on its shard (its outputs finished) and forget it.

        Returns:
            Its summary (`streamer.report.StreamSummary` as a dict); an empty one when it had
            not started; with `cancelled` (and no counts: its shard did not answer), why,
            when its shard did not finish it within `REMOVE_TIMEOUT_S` of its stop.

        Raises:
            UnknownStreamError: the run has no stream of that name.
        """
        async with self._lock:
            self._find(name)
            summary, cut = await self._driver.remove_job(name)
            self._coordinator.remove(name)
            streams = summary.streams if summary is not None else ()
            mine = next((dataclasses.asdict(s) for s in streams if s.name == name), {})
            if cut:
                limit = one_process.REMOVE_TIMEOUT_S
                mine["cancelled"] = (
                    f"its shard did not finish it within {limit:g} s of its stop (a source, "
                    "analysis or caption that did not answer): its run there was cancelled, "
                    "its files end on the last frame written"
                )
                log.warning("%s: removed: %s", name, mine["cancelled"])
            else:
                log.info("%s: removed after %d frames", name, mine.get("frames", 0))
            return mine

    async def change(self, name: str, request: StreamRequest) -> dict[str, Any]:
        """Change a stream's settings, on its shard (from its next frame) and in its job.

        Raises:
            UnknownStreamError: the run has no stream of that name.
        """
        async with self._lock:
            job = self._find(name)
            job.config = _with(job.config, name, request.settings)
            shard = job.shard
            if shard is not None and shard.alive:
                await shard.handle.change.remote(name, request)
            if ALERTS in request.settings and self._coordinator.run.mqtt is not None:
                self._coordinator.run.mqtt.set_alerts(name, request.settings[ALERTS])
            return self._describe(job)

    def _find(self, name: str) -> Job:
        jobs = self._driver.jobs()
        for job in jobs:
            if job.key == name:
                return job
        names = ", ".join(job.key for job in jobs) or "none"
        raise UnknownStreamError(f"no stream named {name!r} (the run's streams: {names})")

    def _describe(self, job: Job) -> dict[str, Any]:
        stream = self._coordinator.by_name.get(job.key)
        outputs = job.config.outputs.for_stream(job.key)
        rate = job.config.analysis.analyze_fps
        stats = stream.stats if stream is not None else None
        return {
            "name": job.key,
            "input": redact(job.spec),
            "live": job.live,
            "state": stream.source.status.state if stream is not None else "queued",
            "analyze_fps": "all" if rate is None else rate,
            "node": stream.node if stream is not None else None,
            "outputs": {
                "video": outputs.video,
                "srt": outputs.srt,
                "vtt": outputs.vtt,
                "jsonl": outputs.jsonl,
            },
            "frames": {
                "decoded": stats.decoded if stats else 0,
                "analysed": stats.analysed if stats else 0,
                "delivered": stats.delivered if stats else 0,
                "dropped": stream.dropped if stream is not None else 0,
            },
        }


def _with(config: Any, name: str, settings: dict[str, Any]) -> Any:
    """`config` (stream `name`'s job's) with the settings a request set kept in it: in the
    stream's own settings, which its run applies at each start, and the rate also in its
    analysis section (what the API shows)."""
    own = {k: v for k, v in settings.items() if k in (RATE, LABELS, ALERTS, CAPTIONS)}
    if not own:
        return config
    kept = {**config.stream_settings.get(name, {}), **own}
    config = dataclasses.replace(config, stream_settings={**config.stream_settings, name: kept})
    if RATE not in own:
        return config
    analysis = dataclasses.replace(config.analysis, analyze_fps=own[RATE])
    return dataclasses.replace(config, analysis=analysis)
