"""How sources connect, decode and convert: frozen, validated value objects.

- `SourceOptions`: what the user chooses (timeouts, reconnects, `--hwaccel`, `--decode-workers`).
- `DecodePlan`: what the run needs from its decode threads, worked out once per run by the
  pipeline: which frames are converted to RGB, at which sizes, with how many decoder threads.
- `AnalysisSize`: the encoder's resize step, done while decoding (see `DecodePlan`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from streamer.core.checks import float_above, int_at_least, int_or_auto, one_of
from streamer.core.options import Option, option, section, validate
from streamer.core.retry import RetryPolicy
from streamer.errors import ConfigError

__all__ = [
    "DEFAULT_RECONNECT",
    "HWACCELS",
    "AnalysisSize",
    "DecodePlan",
    "SourceOptions",
    "decode_threads",
]

HWACCELS = ("none", "cuda", "auto")
_INTERPOLATIONS = ("bicubic", "bilinear")
# FFmpeg's own cap on automatic decoder threads: more only adds frames held in flight.
_MAX_DECODE_THREADS = 16
_SECONDS = "seconds"
# How a live source reconnects: 0.5 s doubling to 10 s, a quarter jittered, without end (a
# camera may come back); `streamer run`'s --reconnect-initial, --reconnect-max and
# --reconnect-attempts set `initial`, `cap` and `max_attempts`.
DEFAULT_RECONNECT = RetryPolicy(initial=0.5, cap=10.0, jitter=0.25, max_attempts=None)


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Connection settings shared by network and camera sources, and how every source decodes.

    Attributes:
        rtsp_transport: "tcp" (default: no loss, passes NAT and firewalls) or "udp".
        open_timeout: seconds to wait for a source to open (connect, handshake, first probe).
        read_timeout: seconds without a decoded frame before the source counts as stalled and
            is reopened.
        analyze_duration: seconds of a network stream FFmpeg may read at open to learn its
            parameters; short keeps opens and reconnects quick (RTSP's SDP already describes
            the stream).
        reconnect: the delays between reconnects (`initial`, doubling up to `cap`, with a
            fraction `jitter` random) and `max_attempts`, the failed attempts in a row before
            giving up (status "failed"); None retries forever, the default for cameras that may
            come back.
        hwaccel: "none" (decode on the CPU), "cuda" (NVDEC through FFmpeg; the run fails
            before any work when CUDA or this FFmpeg build cannot), or "auto" (CUDA when it
            works, else the CPU, said once).
        decode_workers: processes that decode files and network streams (frames reach the
            pipeline through shared memory); 0 decodes in threads of this process; "auto"
            spreads decode over processes when there are many streams for the cores.
    """

    rtsp_transport: str = option(
        "tcp", Option("--rtsp-transport", "how RTSP carries the video", one_of("tcp", "udp"))
    )
    open_timeout: float = option(
        5.0, Option("--open-timeout", "seconds to open a source", float_above(0, _SECONDS))
    )
    read_timeout: float = option(
        5.0,
        Option("--read-timeout", "seconds without a frame = stalled, reopen",
               float_above(0, _SECONDS)),
    )  # fmt: skip
    analyze_duration: float = 0.5
    reconnect: RetryPolicy = section(
        RetryPolicy,
        default=DEFAULT_RECONNECT,
        fields={
            "initial": Option("--reconnect-initial", "first reconnect delay in seconds",
                              float_above(0, _SECONDS)),
            "cap": Option("--reconnect-max", "longest reconnect delay in seconds, "
                          "≥ --reconnect-initial", float_above(0, _SECONDS)),
            "max_attempts": Option("--reconnect-attempts", "give a source up after this many "
                                   "failed attempts in a row", int_at_least(1),
                                   default_text="never"),
        },
    )  # fmt: skip
    hwaccel: str = option(
        "none",
        Option("--hwaccel", "decode on the GPU with NVDEC: cuda (fails at start when CUDA is "
               "missing), auto (CUDA when it works, else the CPU), none", one_of(*HWACCELS),
               group="decode"),
    )  # fmt: skip
    decode_workers: int | str = option(
        0,
        Option("--decode-workers", "processes that decode files and network streams "
               "(shared-memory frames); 0 decodes in this process; auto: when there are many "
               "streams for the cores", int_or_auto(0), metavar="N|auto", group="decode"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)
        _positive("analyze_duration", self.analyze_duration)


def _positive(field: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"`{field}` must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class AnalysisSize:
    """The resize step of an encoder's preprocessing, done by the decoder instead.

    A frame converted from YUV straight to this size costs a fraction of a full-size RGB
    conversion, and the encoder, finding its input already at the resized size, goes on to
    its crop (see `encoders.preprocess.preprocess_frames`).

    Attributes:
        target: the shortest side after resizing (`PreprocessConfig.resize_target`: 224 for
            CLIP, 256 for DINOv2), or the square side when `squash`.
        squash: resize to target×target whatever the aspect (`resize_mode="squash"`).
        interpolation: "bicubic" or "bilinear", as the encoder's reference transform.
    """

    target: int
    squash: bool = False
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if isinstance(self.target, bool) or not isinstance(self.target, int) or self.target < 1:
            raise ConfigError(f"`target` must be a whole number of pixels ≥ 1, got {self.target!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(
                f"`interpolation` must be one of {', '.join(_INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )

    @classmethod
    def from_preprocess(cls, cfg: Any) -> AnalysisSize:
        """The resize step of an encoder's `PreprocessConfig` (taken by its attributes, so
        that decoding never imports the encoders and torch)."""
        squash = cfg.resize_mode == "squash"
        return cls(cfg.size if squash else cfg.resize_target, squash, cfg.interpolation)

    def shape(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of a `height`×`width` frame after the resize, computed exactly as
        `encoders.preprocess.resized_shape` does (so the encoder does not resize again)."""
        if self.squash:
            return self.target, self.target
        short, long = min(height, width), max(height, width)
        new_long = int(self.target * long / short)  # truncation, as torchvision does
        return (self.target, new_long) if height <= width else (new_long, self.target)


@dataclass(frozen=True, slots=True)
class DecodePlan:
    """What a run needs from its decode threads; the default converts every frame to RGB at
    full size, as a source used on its own does.

    Attributes:
        full_frames: convert every frame to full-size RGB, because something draws on every
            frame (a video output, a viewer, a window). False: a frame is converted only
            when it is analysed, and the others are never converted (a run that writes JSON
            Lines and subtitles needs only their timestamps). A frame that was not converted
            still converts itself on first use, so nothing breaks when a frame is picked that
            the decoder did not expect (`streamer.core.frame.Picture`).
        analysis: resize the frames that will be analysed to the encoder's input size while
            decoding; None leaves all resizing to the encoder.
        analyze_fps: the run's analysis rate (None: every frame). The decoder runs the same
            media-time sampler as the pipeline to know which frames will be analysed.
        full_analysed: analysed frames also at full size when `full_frames` is False (a vision
            LLM is sent a JPEG of them).
        analysis_every_frame: every frame gets its analysis-size picture. For decode workers
            on live streams: there the pipeline may pick a frame the worker did not expect
            (one dropped before it), and the worker's frames cannot be converted later.
        threads: decoder threads per stream; 0 lets FFmpeg choose (one per core).
        hwaccel: "cuda" to decode on the GPU, None for the CPU. Resolved before the run
            (`streamer.sources.hwaccel.resolve_hwaccel`): never "auto" here.
    """

    full_frames: bool = True
    analysis: AnalysisSize | None = None
    analyze_fps: float | None = None
    full_analysed: bool = True
    analysis_every_frame: bool = False
    threads: int = 0
    hwaccel: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"`threads` must be a whole number ≥ 0, got {self.threads!r}")
        if self.hwaccel not in (None, "cuda"):
            raise ConfigError(f"`hwaccel` must be 'cuda' or None here, got {self.hwaccel!r}")
        if self.analyze_fps is not None and not self.analyze_fps > 0:
            raise ConfigError(f"`analyze_fps` must be > 0 or None, got {self.analyze_fps!r}")


def decode_threads(streams: int, cores: int | None = None) -> int:
    """Decoder threads per stream for a run of `streams` decoding streams.

    One stream gets FFmpeg's automatic count (frame and slice threads on every core). Several
    share the cores: a stream per core beats many threads per stream, because every frame
    thread holds a frame back and threads of different streams only take turns on the cores.
    """
    cores = cores or os.cpu_count() or 1
    if streams <= 1:
        return 0
    return max(1, min(_MAX_DECODE_THREADS, cores // streams))
