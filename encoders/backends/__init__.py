"""Backends: what runs an encoder's image tower (torch, OpenVINO), chosen by name.

    >>> enc = encoders.create_encoder("clip", "ViT-B/32", backend="openvino",
    ...                               export_cache="~/.cache/streamer/exports")

`backend="auto"` picks OpenVINO on a CPU when it is installed and can run the encoder as asked
(fp32, no torch.compile, a family that exports), torch otherwise, and always torch on CUDA. A
backend named outright that cannot run the encoder as asked is an `UnsupportedBackendError`
naming the combination and the fix. The interface is `encoders.backends.base`.
"""

from __future__ import annotations

from encoders.backends.base import Backend, ImageRuntime
from encoders.backends.openvino_backend import OpenVinoBackend
from encoders.backends.torch_backend import TorchBackend
from encoders.errors import UnsupportedBackendError
from encoders.registry import family

__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "Backend",
    "ImageRuntime",
    "backend",
    "choose_backend",
    "unsupported_reason",
]

_TABLE: dict[str, Backend] = {b.name: b for b in (TorchBackend(), OpenVinoBackend())}
#: the backends, in the order `auto` prefers them on a CPU (last first)
BACKENDS: tuple[str, ...] = tuple(_TABLE)
#: what a user may ask for
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)


def backend(name: str) -> Backend:
    """The backend called `name` ("torch", "openvino").

    Raises:
        UnsupportedBackendError: no backend has that name; the message lists them.
    """
    found = _TABLE.get(name)
    if found is None:
        raise UnsupportedBackendError(
            f"unknown backend {name!r}; valid: {', '.join(BACKEND_CHOICES)}"
        )
    return found


def unsupported_reason(
    name: str, kind: str, *, device: str | None, precision: str = "auto", compile: bool = False
) -> str | None:
    """Why backend `name` cannot run encoder `kind` as asked, or None when it can.

    "auto" always can: it falls back to torch.

    Args:
        name: a backend name or "auto".
        kind: the encoder kind ("clip").
        device, precision, compile: as the encoder is asked to run.

    Raises:
        UnsupportedBackendError: an unknown backend name.
        UnknownEncoderError: an unknown kind.
    """
    if name == "auto":
        return None
    chosen = backend(name)
    supported = family(kind).backends
    if name not in supported:
        return (
            f"encoder {kind!r} has no {name!r} export yet (it runs on: {', '.join(supported)}): "
            "use backend 'torch'"
        )
    return chosen.unsupported(device=device, precision=precision, compile=compile)


def choose_backend(
    name: str, kind: str, *, device: str | None, precision: str = "auto", compile: bool = False
) -> Backend:
    """The backend that runs encoder `kind`: `name`, or for "auto" the best one that can.

    Args:
        name: "auto", "torch" or "openvino".
        kind: the encoder kind.
        device: the device asked for; None: CUDA when available, else the CPU (for "auto"),
            the backend's own default otherwise.
        precision, compile: as the encoder is asked to run.

    Raises:
        UnsupportedBackendError: `name` is unknown, or cannot run the encoder as asked.
    """
    if name == "auto":
        return _automatic(kind, device=device, precision=precision, compile=compile)
    reason = unsupported_reason(name, kind, device=device, precision=precision, compile=compile)
    if reason is not None:
        raise UnsupportedBackendError(reason)
    return backend(name)


def _automatic(kind: str, *, device: str | None, precision: str, compile: bool) -> Backend:
    if device is None:
        device = "cuda" if _cuda_available() else "cpu"
    for name in reversed(BACKENDS):
        why = unsupported_reason(name, kind, device=device, precision=precision, compile=compile)
        if why is None:
            return _TABLE[name]
    raise AssertionError("the torch backend runs everything")  # pragma: no cover


def _cuda_available() -> bool:
    """Whether torch sees CUDA, asked without importing torch where no NVIDIA driver is
    loaded (a CPU machine's run from a cached export needs no torch at all)."""
    import sys
    from pathlib import Path

    if "torch" not in sys.modules and not Path("/proc/driver/nvidia").exists():
        return False
    import torch

    return torch.cuda.is_available()
