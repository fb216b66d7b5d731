"""`create_encoder`: the one front door over the registered families' factories."""

from __future__ import annotations

import os

import torch

from encoders.backends import choose_backend
from encoders.backends.calibration import Calibration
from encoders.backends.export_cache import ExportCache
from encoders.base import Encoder
from encoders.errors import CalibrationError
from encoders.registry import family, parse_model_name

__all__ = ["create_encoder"]


def create_encoder(
    kind: str,
    model: str | None = None,
    *,
    weights: str = "pretrained",
    device: str | torch.device | None = None,
    precision: str = "auto",
    backend: str = "torch",
    export_cache: str | os.PathLike[str] | None = None,
    int8: bool = False,
    calibration: str | os.PathLike[str] | Calibration | None = None,
) -> Encoder:
    """Build an encoder by kind and model name.

    Args:
        kind: a registered kind: "clip", "dinov2" or "default" (`encoders.registry.kinds()`).
        model: a model name of that kind (see `parse_model_name`); None for the kind's default
            (ViT-B/32, large, vit-4x768).
        weights: "pretrained" (the library's cached weights, downloaded once), "random"
            (untrained, logged), or a local checkpoint path. The default encoder is random by
            design: "pretrained" gives its (labelled) random weights.
        device: torch device; None picks CUDA when available, else the CPU.
        precision: "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16" or "bf16".
        backend: what runs the image tower (`encoders.backends`): "torch", "openvino" (CPU;
            `pip install "streamer[cpu]"`), "onnxruntime" (CPU; `pip install "streamer[onnx]"`)
            or "auto" (OpenVINO on a CPU when it is installed, else ONNX Runtime when it is,
            else torch).
        export_cache: folder for the exports a backend other than torch makes (converted once,
            loaded afterwards); None converts in memory on every call.
        int8: quantise the image tower to int8 (OpenVINO or ONNX Runtime, with NNCF:
            `pip install nncf`), calibrated on `calibration`; kept beside the fp32 export.
        calibration: the video whose frames calibrate int8 (a path, or a `Calibration` to
            choose how many frames); needed with `int8`.

    Returns:
        The encoder.

    Raises:
        UnknownEncoderError: unknown kind or model; the message lists the valid names.
        WeightsUnavailableError: weights neither cached nor downloadable, or a missing path.
        UnsupportedBackendError: the backend cannot run this encoder on this device or
            precision (or is not installed); the message names the fix.
        CalibrationError: `int8` without a calibration video, or one that cannot be read.

    Example:
        >>> enc = create_encoder("clip", "tiny", weights="random", device="cpu")
        >>> enc.info.dim
        64
    """
    ref = parse_model_name(kind, model)
    named_device = None if device is None else str(device)
    runner = choose_backend(backend, ref.kind, device=named_device, precision=precision, int8=int8)
    frames = _calibration(calibration) if int8 else None
    device, precision = runner.placement(device, precision)
    encoder = family(ref.kind).create(ref, device, weights=weights, precision=precision)
    cache = ExportCache(export_cache) if export_cache is not None else None
    runtime = runner.runtime(encoder, cache, int8=frames)
    if runtime is not None:
        encoder.run_on(runtime)
    return encoder


def _calibration(calibration: str | os.PathLike[str] | Calibration | None) -> Calibration:
    if calibration is None:
        raise CalibrationError(
            "int8 needs frames to calibrate on, and none were named: pass calibration=PATH "
            "(a video; CLI: --calibrate PATH), or drop int8"
        )
    chosen = calibration if isinstance(calibration, Calibration) else Calibration(calibration)
    chosen.check()  # before minutes of building and exporting
    return chosen
