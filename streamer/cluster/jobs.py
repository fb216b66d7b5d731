"""The work of a cluster run: which streams go together, and the summary at the end.

A *job* is one `run_pipeline` on one shard: a file (files are a queue over the shards, one job
each), or a live stream (each keeps its shard until the run ends or the shard's node is lost).
Every job's configuration names its streams as the whole run names them (`NAME=SPEC`), so a
stream's outputs (`out/{stream}.jsonl`) are the ones one process would write.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from streamer.analysis.alerts import check_rule_streams
from streamer.config import RunConfig
from streamer.errors import SourceNotFoundError
from streamer.report import RunSummary, StreamSummary
from streamer.sources import stream_names
from streamer.sources.names import spec_kind

__all__ = ["Job", "Plan", "is_live", "job_config", "merge_summaries", "plan_run"]

_OUTPUT_PATHS = ("video", "srt", "vtt", "jsonl")  # OutputConfig's fields that name files


@dataclass(eq=False)
class Job:
    """One stream's (a file's, or a live stream's) run on a shard.

    Attributes:
        key: the stream's name (unique in the run).
        spec: its input as given (credentials and all).
        live: a live stream (it keeps its shard) rather than a file (a queue item).
        config: the one-process configuration that runs it.
        pin: where it must run, None for anywhere.
        attempt: 1 for the first run, 2 after its node was lost once, …
        shard: the shard running it now.
    """

    key: str
    spec: str
    live: bool
    config: RunConfig
    pin: Any = None
    attempt: int = 1
    shard: Any = field(default=None, repr=False)

    @property
    def connects(self) -> bool:
        """A camera or a network stream (it connects and reconnects), not a file."""
        return spec_kind(self.spec) != "file"

    @property
    def path(self) -> str | None:
        """A file's absolute path (as its shard opens it), None for a live stream."""
        return None if self.connects else os.path.abspath(self.spec)

    def describe(self) -> str:
        kind = "stream" if self.live else "file"
        again = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        return f"{kind} {self.key}{again}"

    def after_loss(self) -> str:
        """What happens to this job once its shard is lost, for the warning that says so."""
        if not self.live:
            return "redoing it from the start elsewhere"
        if self.pin is not None:
            return f"pinned ({self.pin}): lost until a node it may run on joins the cluster"
        return "restarting it elsewhere"

    def retry(self) -> Job:
        return dataclasses.replace(self, attempt=self.attempt + 1, shard=None)


@dataclass(frozen=True, slots=True)
class Plan:
    """A run's jobs, in input order: `live` ones (started at once, one shard each) and `files`
    (queued)."""

    order: tuple[str, ...]
    live: tuple[Job, ...]
    files: tuple[Job, ...]

    @property
    def jobs(self) -> list[Job]:
        """Every job, in input order."""
        by_key = {job.key: job for job in (*self.live, *self.files)}
        return [by_key[key] for key in self.order]

    def with_job(self, job: Job) -> Plan:
        """This plan and a stream added while the run runs (last in its order)."""
        if job.live:
            return Plan((*self.order, job.key), (*self.live, job), self.files)
        return Plan((*self.order, job.key), self.live, (*self.files, job))

    def without(self, key: str) -> Plan:
        """This plan less a stream removed while the run runs."""
        return Plan(
            tuple(k for k in self.order if k != key),
            tuple(j for j in self.live if j.key != key),
            tuple(j for j in self.files if j.key != key),
        )


def plan_run(config: RunConfig) -> Plan:
    """The jobs of `config`, after the checks one process makes before any work.

    Raises:
        ConfigError: outputs that cannot serve the inputs, or an alert naming a stream the run
            does not have (`RunConfig` has checked the pins).
        SourceNotFoundError: a file input that does not exist (as seen from this machine: the
            nodes are expected to share it).
    """
    named = stream_names(config.inputs)
    names = [name for name, _ in named]
    config.outputs.check(names, config.inputs)
    check_rule_streams(config.alerts, names)
    live, files = [], []
    for name, spec in named:
        live_one = is_live(spec, config.live)
        if not live_one and spec_kind(spec) == "file" and not os.path.exists(spec):
            raise SourceNotFoundError(f"{spec}: no such file")
        job = Job(name, spec, live_one, job_config(config, name, spec), config.cluster.pin_of(name))
        (live if live_one else files).append(job)
    return Plan(tuple(names), tuple(live), tuple(files))


def is_live(spec: str, live: bool | None) -> bool:
    """A camera or a URL is a live stream (it keeps a shard); a file is a queue item unless
    the run treats every input as live (`--live`)."""
    if live is not None:
        return live
    return spec_kind(spec) != "file"


def job_config(config: RunConfig, name: str, spec: str) -> RunConfig:
    """The one-process configuration of stream `name`: its input named as the whole run names
    it, the alert rules that watch it, its own settings, no cluster. Paths are made absolute
    from here: a shard's working directory is its Ray worker's, not this one's."""
    rules = tuple(rule for rule in config.alerts if not rule.streams or name in rule.streams)
    own = {name: config.stream_settings[name]} if name in config.stream_settings else {}
    if spec_kind(spec) == "file":
        spec = os.path.abspath(spec)
    outputs = config.outputs
    paths = {key: os.path.abspath(getattr(outputs, key)) for key in _OUTPUT_PATHS
             if getattr(outputs, key) is not None}  # fmt: skip
    archive = config.archive
    if archive is not None:
        archive = dataclasses.replace(archive, path=os.path.abspath(archive.path))
    return dataclasses.replace(
        config, input=(f"{name}={spec}",), alerts=rules, cluster=None, archive=archive,
        outputs=dataclasses.replace(outputs, **paths), stream_settings=own,
    )  # fmt: skip


def merge_summaries(
    plan: Plan, done: dict[str, RunSummary], wall_s: float, *, stopped: bool,
    random_weights: bool,
) -> RunSummary:  # fmt: skip
    """One run's summary from its jobs' (a job that never finished counts as not started)."""
    by_name: dict[str, StreamSummary] = {}
    for summary in done.values():
        for stream in summary.streams:
            by_name[stream.name] = stream
    streams = tuple(by_name[name] for name in plan.order if name in by_name)
    incomplete = next((s.incomplete for s in done.values() if s.incomplete), None)
    missing = [name for name in plan.order if name not in by_name]
    if missing and not stopped and incomplete is None:
        incomplete = f"{len(missing)} stream(s) did not run: {', '.join(missing[:5])}"
    return RunSummary(
        frames=sum(s.frames for s in streams),
        analysed=sum(s.analysed for s in streams),
        captions=sum(s.captions for s in streams),
        wall_s=wall_s,
        interrupted=stopped and (any(s.interrupted for s in done.values()) or bool(missing)),
        incomplete=incomplete,
        random_weights=random_weights,
        loop_lag_max_s=max((s.loop_lag_max_s for s in done.values()), default=0.0),
        streams=streams,
    )
