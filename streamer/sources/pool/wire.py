"""What travels between the pipeline's process and a decode worker: typed messages.

Every message is a small frozen dataclass, pickled over the worker's socket; each side takes
only its own kinds (`from_worker`, `to_worker`) and dispatches on the class. Anything else is
a bug on one side, refused loudly (`TypeError`) rather than skipped.

::

    pipeline → worker                          worker → pipeline
      Open(stream, source, plan, slots, tap)     Ready(pid)
      Ring(stream, segment, slot_bytes)          Log(level, logger, text)
      Free(stream, slot)                         Need(stream, slot_bytes)
      Stop(stream)                               FrameReady(stream, slot, meta)
      Close(stream)                              Status(stream, report)
      Quit()                                     Recorded(stream, state)
                                                 End(stream, report)
                                                 Failed(stream, message)

Pixels never travel here: they are in the stream's shared-memory slots (`FrameMeta` says where).
Packets do not travel either: a stream's packet tap (`streamer.sources.tap`) goes to the worker
in `Open`, records there, and only its state comes back (`Recorded`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from fractions import Fraction

from streamer.errors import (
    SourceAuthError,
    SourceDecodeError,
    SourceError,
    SourceNotFoundError,
    SourceOpenError,
    SourceTimeout,
    SourceUnavailableError,
)
from streamer.sources.base import Source, SourceBase, WorkerSpec
from streamer.sources.info import VideoInfo
from streamer.sources.options import DecodePlan, SourceOptions
from streamer.sources.status import SourceStatus
from streamer.sources.tap import PacketTap, TapState

__all__ = [
    "Close",
    "End",
    "Failed",
    "Failure",
    "FileSpec",
    "FrameMeta",
    "FrameReady",
    "Free",
    "FromWorker",
    "Log",
    "Need",
    "NetworkSpec",
    "Open",
    "Quit",
    "Ready",
    "Recorded",
    "Ring",
    "SourceReport",
    "Status",
    "Stop",
    "ToWorker",
    "from_worker",
    "to_worker",
]

# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A local file, as a worker opens it (`FileSource`)."""

    path: str
    name: str
    live: bool
    paced: bool


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    """A network stream, as a worker opens it (`NetworkSource`). The URL keeps its credentials
    (it goes over a private socket) and is left out of the repr."""

    url: str = field(repr=False)
    name: str
    live: bool
    options: SourceOptions


# The errors a report may carry, by name (exceptions do not travel as objects: a
# `SourceDecodeError` does not survive pickling, and a traceback can hold credentials).
_ERRORS: dict[str, type[SourceError]] = {
    cls.__name__: cls
    for cls in (
        SourceError,
        SourceNotFoundError,
        SourceOpenError,
        SourceAuthError,
        SourceUnavailableError,
        SourceTimeout,
    )
}


@dataclass(frozen=True, slots=True)
class Failure:
    """An error of a source, as it travels: its class's name and message (and where a file's
    decoding stopped)."""

    kind: str
    message: str
    frames: int | None = None  # a `SourceDecodeError`'s, else None
    pts: float | None = None

    @classmethod
    def of(cls, error: SourceError | None) -> Failure | None:
        """How `error` travels (None stays None)."""
        if error is None:
            return None
        if isinstance(error, SourceDecodeError):
            return cls(type(error).__name__, str(error), error.frames, error.pts)
        return cls(type(error).__name__, str(error))

    def error(self) -> SourceError:
        """The error again: its own class when it is a known source error, else `SourceError`."""
        if self.frames is not None:
            return SourceDecodeError(self.message, frames=self.frames, pts=self.pts)
        return _ERRORS.get(self.kind, SourceError)(self.message)


@dataclass(frozen=True, slots=True)
class SourceReport:
    """A source's state as the worker's copy of it has it.

    Attributes:
        status: a snapshot of the copy's status.
        info: the copy's video description.
        error: why the copy failed, if it did.
        incomplete: why the copy's file ended early, if it did.
    """

    status: SourceStatus
    info: VideoInfo | None
    error: Failure | None = None
    incomplete: Failure | None = None

    @classmethod
    def of(cls, source: SourceBase) -> SourceReport:
        """What `source` says about itself now (a copy: its status goes on changing)."""
        return cls(
            replace(source.status),
            source.info,
            Failure.of(source.error),
            Failure.of(source.incomplete),
        )

    def apply_to(self, source: Source) -> None:
        """Have `source` (the pipeline's copy) follow this report."""
        incomplete = self.incomplete.error() if self.incomplete is not None else None
        source.follow(
            self.status,
            self.info,
            self.error.error() if self.error is not None else None,
            incomplete if isinstance(incomplete, SourceDecodeError) else None,
        )


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """A frame's record without its pixels, which are in a slot of the stream's segment.

    Attributes:
        pictures: (kind, byte offset in the segment, shape) of each picture; kind is "full"
            or "analysis".
        dropped: frames the worker dropped so far (live), in total.
    """

    index: int
    pts: float
    captured: float
    pts_raw: int | None
    time_base: Fraction | None
    pictures: tuple[tuple[str, int, tuple[int, ...]], ...]
    dropped: int


# ---------------------------------------------------------------------------------------------
# The pipeline's messages to a worker


@dataclass(frozen=True, slots=True)
class Open:
    """Start decoding a stream with `slots` frames in flight; `tap`: where the worker also
    hands the stream's packets (it makes the tap's sink there), None for none."""

    stream: int
    source: WorkerSpec  # a FileSpec or a NetworkSpec
    plan: DecodePlan
    slots: int
    tap: PacketTap | None = None


@dataclass(frozen=True, slots=True)
class Ring:
    """The stream's shared-memory segment (made by the pipeline): `slot_bytes` per slot."""

    stream: int
    segment: str
    slot_bytes: int


@dataclass(frozen=True, slots=True)
class Free:
    """The pipeline has copied the slot's frame out: the slot can be written again."""

    stream: int
    slot: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop decoding the stream (it ends with an `End`)."""

    stream: int


@dataclass(frozen=True, slots=True)
class Close:
    """The pipeline is done with the stream, whatever state it is in: drop it."""

    stream: int


@dataclass(frozen=True, slots=True)
class Quit:
    """Leave: stop every stream and exit."""


ToWorker = Open | Ring | Free | Stop | Close | Quit

# ---------------------------------------------------------------------------------------------
# A worker's messages to the pipeline


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker is up and takes streams."""

    pid: int


@dataclass(frozen=True, slots=True)
class Log:
    """A log record of the worker, logged by the pipeline's logger of that name."""

    level: int
    logger: str
    text: str


@dataclass(frozen=True, slots=True)
class Need:
    """The stream needs a (new, larger) segment of `slot_bytes` per slot; none of its frames
    is in flight, so the old one can go."""

    stream: int
    slot_bytes: int


@dataclass(frozen=True, slots=True)
class FrameReady:
    """A frame is in the stream's slot `slot`."""

    stream: int
    slot: int
    meta: FrameMeta


@dataclass(frozen=True, slots=True)
class Status:
    """The stream's source changed state."""

    stream: int
    report: SourceReport


@dataclass(frozen=True, slots=True)
class Recorded:
    """The stream's packet tap changed state (what it writes, or why it stopped)."""

    stream: int
    state: TapState


@dataclass(frozen=True, slots=True)
class End:
    """The stream's source returned (ended, failed or stopped): its final state."""

    stream: int
    report: SourceReport


@dataclass(frozen=True, slots=True)
class Failed:
    """Running the stream raised an error the source does not report itself (a bug, or no
    shared memory); the stream is over."""

    stream: int
    message: str


FromWorker = Ready | Log | Need | FrameReady | Status | Recorded | End | Failed


def to_worker(message: object) -> ToWorker:
    """`message`, checked to be one the pipeline sends to a worker.

    Raises:
        TypeError: it is not (the two sides are out of step: a bug).
    """
    if not isinstance(message, ToWorker):
        raise TypeError(f"decode worker: unknown message from the pipeline: {_show(message)}")
    return message


def from_worker(message: object) -> FromWorker:
    """`message`, checked to be one a worker sends to the pipeline.

    Raises:
        TypeError: it is not (the two sides are out of step: a bug).
    """
    if not isinstance(message, FromWorker):
        raise TypeError(f"decode pool: unknown message from a worker: {_show(message)}")
    return message


def _show(message: object) -> str:
    """A short description of an unexpected message: its type, and its fields' names (not its
    values, which may hold a URL with credentials)."""
    if dataclasses.is_dataclass(message):
        names = ", ".join(f.name for f in dataclasses.fields(message))
        return f"{type(message).__qualname__}({names})"
    return type(message).__qualname__
