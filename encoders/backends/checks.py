"""What the exporting backends (OpenVINO, ONNX Runtime) cannot do, in one set of words."""

from __future__ import annotations

import importlib.util

from encoders.extras import install_hint

__all__ = ["exported_unsupported"]


def exported_unsupported(
    backend: str,
    *,
    device: str | None,
    precision: str,
    compile: bool,
    int8: bool,
    cpu_only: str = "",
) -> str | None:
    """None when an exporting backend can run an encoder so, else why not and the fix.

    Args:
        backend: its name ("openvino").
        device, precision, compile, int8: as asked (`Backend.unsupported`).
        cpu_only: why it runs on the CPU only, put after "CPU only" ("" for no reason given).
    """
    if device is not None and str(device).partition(":")[0] != "cpu":
        return (
            f"backend {backend!r} runs on the CPU only{cpu_only}, got device {str(device)!r}: "
            "use backend 'torch' on that device, or device 'cpu'"
        )
    if precision not in ("auto", "fp32"):
        return (
            f"backend {backend!r} runs in fp32 only (or int8, quantised: --int8), got "
            f"precision {precision!r}: use precision 'fp32' (or 'auto'), or backend 'torch'"
        )
    if compile:
        return (
            "torch.compile (compile) applies to backend 'torch' only: drop it, or use "
            "backend 'torch'"
        )
    if int8 and importlib.util.find_spec("nncf") is None:
        return (
            "int8 (--int8) needs the nncf package, which is not installed: "
            f"{install_hint('cpu', 'nncf')}, or drop --int8"
        )
    return None
