"""What every source is: the `Source` protocol the pipeline reads, and the bookkeeping that
file, network and camera sources share (`SourceBase`).

A source is made with everything it needs (its final name, its contract, its options); nobody
sets its attributes afterwards. It runs with `run(out, stop, plan)` and, while and after it
runs, says what it is doing in `status` (and `incomplete` when a file ended early).

When a decode worker process runs a copy of a source (`streamer.sources.pool`), the copy's
state travels to this process and the source here follows it (`follow`), so the pipeline
reads the same attributes wherever a source runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from streamer.core.channel import Channel
from streamer.core.frame import Frame
from streamer.errors import ConfigError, SourceDecodeError, SourceError
from streamer.sources.info import VideoInfo
from streamer.sources.options import DecodePlan
from streamer.sources.status import SourceStatus

if TYPE_CHECKING:
    from streamer.sources.tap import PacketTap

__all__ = ["Source", "SourceBase", "WorkerSpec"]

log = logging.getLogger("streamer.sources")


class WorkerSpec(Protocol):
    """How a decode worker process re-creates a source: a small picklable record (the kinds
    are in `streamer.sources.pool.wire`)."""

    name: str
    live: bool


class Source(Protocol):
    """What the pipeline knows of a source: every source has these from construction.

    Attributes:
        name: the stream's final name (unique in its run, no credentials).
        live: the live contract (freshest frames win, drops counted) rather than the file
            contract (every frame, backpressure).
        connects: the source connects to a device or server (a camera, a network stream):
            its `status.state` follows the connection and every change is worth recording.
            False for a local file, which only plays and ends.
        path: the local file the frames come from (its audio can be copied), else None.
        tappable: the source hands its compressed packets to a `PacketTap` given to `run`
            (network streams); False for sources that have none to hand (cameras) or whose
            input is never copied (local files): they refuse a tap.
        info: what the video says about itself; None until a live source first connects.
        status: what the source is doing now, and its counters (frames, damaged, reconnects).
        incomplete: set when a file stopped before its end (truncated or damaged, or its decode
            worker died): where and why. None otherwise, and always for live sources, which
            report a failure in `status`.
    """

    name: str
    live: bool
    connects: bool
    tappable: bool
    path: str | None
    info: VideoInfo | None
    status: SourceStatus
    incomplete: SourceDecodeError | None

    async def run(
        self,
        out: Channel[Frame],
        stop: asyncio.Event,
        plan: DecodePlan = ...,
        tap: PacketTap | None = None,
    ) -> None:
        """Decode frames into `out` as `plan` asks (by default every frame in full-size RGB),
        until the input ends, the source gives up, or `stop` is set; close `out` on return.
        `tap`: where a `tappable` source also hands its packets (`streamer.sources.tap`)."""
        ...

    def worker_spec(self) -> WorkerSpec | None:
        """How a decode worker process re-creates this source, or None when it cannot run
        elsewhere (a camera belongs to the process that opened it)."""
        ...

    # How a source follows its copy in a decode worker (`SourceBase` has them all).

    def follow(
        self,
        status: SourceStatus,
        info: VideoInfo | None,
        error: SourceError | None,
        incomplete: SourceDecodeError | None,
    ) -> None: ...

    def frame_delivered(self) -> None: ...

    def lost(self, message: str, pts: float | None) -> None: ...


class SourceBase:
    """The state every source keeps, and how it follows a copy of itself that a decode worker
    runs (`streamer.sources.pool`): the pool calls `follow`, `frame_delivered` and `lost`.

    Subclasses set `connects` (and `tappable`) and implement `run`, and `worker_spec` when
    they can run in a decode worker.

    Attributes:
        error: why a live source failed (`status.state == "failed"`); None otherwise.
    """

    connects: bool = False
    tappable: bool = False

    def __init__(
        self,
        name: str,
        *,
        live: bool,
        info: VideoInfo | None,
        status: SourceStatus,
        path: str | None = None,
    ) -> None:
        self.name = name
        self.live = live
        self.info = info
        self.status = status
        self.path = path
        self.incomplete: SourceDecodeError | None = None
        self.error: SourceError | None = None

    def worker_spec(self) -> WorkerSpec | None:
        """None: a source runs in this process unless its kind says how a worker makes it."""
        return None

    def _refuse_tap(self, tap: PacketTap | None) -> None:
        """A source that is not `tappable` was given a tap: a mistake of the caller, said
        before anything runs rather than recording nothing without a word."""
        if tap is not None:
            raise ConfigError(
                f"{self.name}: this source has no packets to record (only network streams "
                "do); record it by encoding its frames instead"
            )

    def follow(
        self,
        status: SourceStatus,
        info: VideoInfo | None,
        error: SourceError | None,
        incomplete: SourceDecodeError | None,
    ) -> None:
        """Take the state of this source's copy in a decode worker. All of its status but
        `frames`: `frame_delivered` counts the frames as they reach this process."""
        mine = self.status
        mine.state, mine.offline_since = status.state, status.offline_since
        mine.reconnects, mine.damaged = status.reconnects, status.damaged
        mine.last_error = status.last_error
        self.info = info
        self.error = error or self.error
        self.incomplete = incomplete or self.incomplete

    def frame_delivered(self) -> None:
        """A frame of this source's copy in a decode worker reached the pipeline's channel."""
        self.status.frames += 1

    def lost(self, message: str, pts: float | None) -> None:
        """This source's copy in a decode worker is gone (the worker died, or failed in a way
        it did not expect): this source fails with `message`. `pts`: its last frame's time."""
        self.status.state = "failed"
        self.status.last_error = message
        self.error = SourceError(message)
        log.error("%s", message)
