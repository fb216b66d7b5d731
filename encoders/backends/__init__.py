"""Backends: what runs an encoder's image tower (torch, OpenVINO, ONNX Runtime), chosen by name.

    >>> enc = encoders.create_encoder("clip", "ViT-B/32", backend="openvino",
    ...                               export_cache="~/.cache/streamer/exports")

`backend="auto"` picks OpenVINO on a CPU when it is installed and can run the encoder as asked
(fp32 or int8, no torch.compile, a family that exports), else ONNX Runtime when that is
installed and can, else torch; always torch on CUDA (int8 on CUDA: an error, torch does not
quantise). Two exceptions: without an export cache to keep the export in (or with one it
cannot write), "auto" picks torch in fp32 (converting at every start costs more than the
faster forward saves), and int8 on a CPU without VNNI (AVX2 only) prefers ONNX Runtime, whose
int8 kernels are about twice torch's speed there while OpenVINO's are not faster than fp32
(BENCHMARKS.md). A backend named outright that cannot run the encoder as asked is an
`UnsupportedBackendError` naming the combination and the fix. The interface is
`encoders.backends.base` (what a backend makes: `encoders.backends.runtime`).

OpenVINO and ONNX Runtime both run the family's forward as `torch.export` captures it
(`encoders.backends.capture`): a family whose forward exports (it lists "openvino" or
"onnxruntime" in its `Family.backends`) runs on both.
"""

from __future__ import annotations

import functools
import os
import sys

from encoders.backends.base import Backend
from encoders.backends.onnxruntime_backend import OnnxRuntimeBackend
from encoders.backends.openvino_backend import OpenVinoBackend
from encoders.backends.runtime import ImageRuntime
from encoders.backends.torch_backend import TorchBackend
from encoders.errors import UnsupportedBackendError
from encoders.registry import family

# `import openvino` sends a usage event to Google Analytics at every start, from a process it
# forks for the purpose, unless the user has opted out of its `openvino_telemetry` package; and
# it writes a client id into the home folder. A camera box should not report to a third party
# unasked, nor fork while it starts. With that package unimportable, OpenVINO and NNCF fall back
# to their own telemetry stubs. Set before any backend imports openvino (they all do it lazily);
# a process that imported the package itself keeps it.
sys.modules.setdefault("openvino_telemetry", None)
# ONNX Runtime's Linux wheels (1.2x and later) queue usage events in a database under
# $XDG_CACHE_HOME/Microsoft/DeveloperTools, with a device id, for upload to Microsoft's
# collector; its own switch, read when it loads, turns that off. A user's setting is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "Backend",
    "ImageRuntime",
    "backend",
    "choose_backend",
    "cpu_has_vnni",
    "cpu_info",
    "family_backends",
    "parse_cpuinfo",
    "unsupported_reason",
]

_TABLE: dict[str, Backend] = {
    b.name: b for b in (TorchBackend(), OnnxRuntimeBackend(), OpenVinoBackend())
}
#: the backends, in the order `auto` prefers them on a CPU (last first)
BACKENDS: tuple[str, ...] = tuple(_TABLE)
#: what a user may ask for
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)
#: the backends that run the `torch.export` capture of a family's forward
EXPORTED: tuple[str, ...] = ("onnxruntime", "openvino")


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


def family_backends(kind: str) -> tuple[str, ...]:
    """The backends that can run family `kind`'s image tower, installed or not.

    A family lists "torch" and the exporting backends it was checked with; the exporting
    backends all run the same `torch.export` capture, so naming one names them all.

    Raises:
        UnknownEncoderError: an unknown kind.
    """
    listed = family(kind).backends
    exports = any(name in EXPORTED for name in listed)
    return tuple(name for name in BACKENDS if name in listed or (exports and name in EXPORTED))


def unsupported_reason(
    name: str,
    kind: str,
    *,
    device: str | None,
    precision: str = "auto",
    compile: bool = False,
    int8: bool = False,
) -> str | None:
    """Why backend `name` cannot run encoder `kind` as asked, or None when it can.

    "auto" can unless int8 is asked for where no backend quantises (on CUDA, or with neither
    OpenVINO nor ONNX Runtime installed): otherwise it falls back to torch.

    Args:
        name: a backend name or "auto".
        kind: the encoder kind ("clip").
        device, precision, compile: as the encoder is asked to run.
        int8: whether the image tower is to be quantised to int8.

    Raises:
        UnsupportedBackendError: an unknown backend name.
        UnknownEncoderError: an unknown kind.
    """
    if name == "auto":
        if not int8:
            return None
        device = device if device is not None else _default_device()
        asked = {"device": device, "precision": precision, "compile": compile, "int8": True}
        reasons = [unsupported_reason(other, kind, **asked) for other in reversed(BACKENDS)]
        if all(reasons):
            return "no backend can run int8 so: " + "; ".join(r for r in reasons if r)
        return None
    chosen = backend(name)
    supported = family_backends(kind)
    if name not in supported:
        return (
            f"encoder {kind!r} has no {name!r} export yet (it runs on: {', '.join(supported)}): "
            "use backend 'torch'"
        )
    return chosen.unsupported(device=device, precision=precision, compile=compile, int8=int8)


def choose_backend(
    name: str,
    kind: str,
    *,
    device: str | None,
    precision: str = "auto",
    compile: bool = False,
    int8: bool = False,
    cached: bool = True,
) -> Backend:
    """The backend that runs encoder `kind`: `name`, or for "auto" the best one that can.

    Args:
        name: "auto", "torch", "openvino" or "onnxruntime".
        kind: the encoder kind.
        device: the device asked for; None: CUDA when available, else the CPU (for "auto"),
            the backend's own default otherwise.
        precision, compile, int8: as the encoder is asked to run.
        cached: whether an export cache keeps what an exporting backend converts; without
            one, "auto" picks torch for fp32 (it would convert at every start).

    Raises:
        UnsupportedBackendError: `name` is unknown, or cannot run the encoder as asked.
    """
    if name == "auto" and device is None:
        device = _default_device()
    asked = {"device": device, "precision": precision, "compile": compile, "int8": int8}
    reason = unsupported_reason(name, kind, **asked)
    if reason is not None:
        raise UnsupportedBackendError(reason)
    if name != "auto":
        return backend(name)
    if not cached and not int8:
        return _TABLE["torch"]
    for candidate in _auto_order(int8):
        if unsupported_reason(candidate, kind, **asked) is None:
            return _TABLE[candidate]
    raise AssertionError("the torch backend runs everything in fp32")  # pragma: no cover


def _auto_order(int8: bool) -> tuple[str, ...]:
    """The backends "auto" tries, best first: OpenVINO, ONNX Runtime, torch; for int8 on a CPU
    without VNNI, ONNX Runtime before OpenVINO."""
    order = tuple(reversed(BACKENDS))
    if int8 and not cpu_has_vnni():
        order = ("onnxruntime", *(name for name in order if name != "onnxruntime"))
    return order


def parse_cpuinfo(text: str) -> dict[str, str]:
    """/proc/cpuinfo's fields of its first processor ("model name", "flags", ...)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())
    return fields


@functools.cache
def cpu_info() -> dict[str, str]:
    """This machine's `parse_cpuinfo`, read once; empty where /proc/cpuinfo cannot be read."""
    from pathlib import Path

    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {}


def cpu_has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX), from
    /proc/cpuinfo; True where that cannot be read (not Linux): OpenVINO's default."""
    info = cpu_info()
    if not info:
        return True
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(info.get("flags", "").split()))


def _default_device() -> str:
    return "cuda" if _cuda_available() else "cpu"


def _cuda_available() -> bool:
    """Whether torch sees CUDA, asked without importing torch where no NVIDIA driver is
    loaded (a CPU machine's run from a cached export needs no torch at all)."""
    import sys
    from pathlib import Path

    if "torch" not in sys.modules and not Path("/proc/driver/nvidia").exists():
        return False
    import torch

    return torch.cuda.is_available()
