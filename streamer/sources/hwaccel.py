"""GPU decoding through PyAV's hwaccel (FFmpeg's NVDEC), checked before a run starts.

`--hwaccel cuda` needs three things: an FFmpeg build with CUDA (the PyAV wheels for Linux
x86-64 have it), an NVIDIA driver, and a GPU the process can open. `resolve_hwaccel` opens a
CUDA device once, before any work: `cuda` fails there with the reason and the fix, `auto`
falls back to the CPU with one info line. A stream whose codec NVDEC does not decode (MJPEG on
older GPUs, a rare profile) is decoded on the CPU; `check_stream` says so when it is opened.

NVDEC frames are copied back to host memory by PyAV as NV12 (not planar YUV 4:2:0); the
conversion to RGB (`streamer.sources.file`) goes through libswscale, which reads either.
"""

from __future__ import annotations

import logging

import av
import av.error
from av.codec.hwaccel import HWAccel, hwdevices_available

from streamer.errors import ConfigError

__all__ = ["check_stream", "cuda_problem", "hwaccel_for", "resolve_hwaccel"]

log = logging.getLogger("streamer.sources")

_PROBE_CODEC = "h264"  # every NVDEC generation decodes it: the device check uses it


def resolve_hwaccel(choice: str) -> str | None:
    """Turn `--hwaccel none|cuda|auto` into what decoders use: "cuda" or None (the CPU).

    Raises:
        ConfigError: `cuda` was asked for and cannot be had (the message says why and what to
            do); raised before any work, so no output is touched.
    """
    if choice == "none":
        return None
    if choice not in ("cuda", "auto"):
        raise ConfigError(f"--hwaccel must be none, cuda or auto, got {choice!r}")
    problem = cuda_problem()
    if problem is None:
        log.info("decoding on the GPU (CUDA, NVDEC)")
        return "cuda"
    if choice == "auto":
        log.info("--hwaccel auto: decoding on the CPU (%s)", problem)
        return None
    raise ConfigError(
        f"--hwaccel cuda: {problem}. Fix: run where `nvidia-smi` lists a GPU (in a container: "
        "start it with the GPU, e.g. `docker run --gpus all`), or use --hwaccel auto to "
        "decode on the CPU when CUDA is missing, or --hwaccel none."
    )


def cuda_problem() -> str | None:
    """Why CUDA decoding cannot be used here, or None when it can (a device opened)."""
    built = hwdevices_available()
    if "cuda" not in built:
        has = ", ".join(built) or "none"
        return (
            f"this FFmpeg build (PyAV {av.__version__}) has no CUDA decoding (its hardware "
            f"decoders: {has}); install a PyAV wheel built with NVDEC"
        )
    try:
        HWAccel("cuda", allow_software_fallback=False).create(av.Codec(_PROBE_CODEC, "r"))
    except (av.error.FFmpegError, OSError, NotImplementedError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return f"no CUDA device could be opened ({reason}: no NVIDIA driver or no GPU visible)"
    return None


def hwaccel_for(kind: str | None) -> HWAccel | None:
    """PyAV's settings for `av.open(..., hwaccel=)`; None decodes on the CPU.

    Software fallback stays on: a codec NVDEC cannot decode is decoded on the CPU rather than
    failing the stream (`check_stream` reports it).
    """
    if kind is None:
        return None
    return HWAccel(kind, allow_software_fallback=True)


def check_stream(stream: av.VideoStream, kind: str | None, name: str) -> bool:
    """Whether `stream` decodes on the GPU; says so (info) when the GPU was asked for and its
    codec has no GPU decoder here."""
    if kind is None:
        return False
    on_gpu = bool(stream.codec_context.is_hwaccel)
    if not on_gpu:
        log.info(
            "%s: %s has no %s decoder here; decoding it on the CPU",
            name,
            stream.codec_context.name,
            kind.upper(),
        )
    return on_gpu
