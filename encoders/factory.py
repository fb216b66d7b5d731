"""`create_encoder`: the one front door over the registered families' factories."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from encoders.abandon import check_abandoned
from encoders.backends import BACKENDS, choose_backend, unsupported_reason
from encoders.backends import backend as backend_named  # `backend` is open_export's argument
from encoders.backends.background import BackgroundExport
from encoders.backends.cache_inventory import mark_used, stale_note
from encoders.backends.calibration import Calibration
from encoders.backends.export_cache import ExportCache, keeps_exports, state_dict_digest
from encoders.backends.locator import ExportRequest, find_export, request_for, write_locator
from encoders.errors import CalibrationError, UnsupportedBackendError, local_weights_path
from encoders.exported import ExportedEncoder, card_of
from encoders.registry import ModelRef, family, parse_model_name

if TYPE_CHECKING:
    import torch

    from encoders.base import Encoder

__all__ = ["create_encoder", "open_export"]

logger = logging.getLogger("encoders")


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
    export_in_background: bool = False,
) -> Encoder:
    """Build an encoder by kind and model name.

    Args:
        kind: a registered kind: "clip", "dinov2" or "default" (`encoders.registry.kinds()`).
        model: a model name of that kind (see `parse_model_name`); None for the kind's default
            (ViT-B/32, large, vit-4x768).
        weights: "pretrained" (the library's cached weights, downloaded once; the default
            encoder's are random by design), "random" (untrained, logged), or a checkpoint path.
        device: torch device; None picks CUDA when available, else the CPU.
        precision: "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16" or "bf16" (on
            OpenVINO: its fp32 export computed in bf16, on a CPU with AVX-512 BF16 or AMX).
        backend: "torch", "openvino", "onnxruntime" or "auto" (`encoders.backends` says which
            needs what and what "auto" picks: fp32 torch without an export it can keep or read).
        export_cache: folder for the exports a backend other than torch makes (converted once,
            loaded after); read only when it cannot be written; None: converted every call.
        int8: quantise the image tower to int8 (NNCF), calibrated on `calibration` (a
            video path, or a `Calibration` to choose how many frames); kept in the cache.
        export_in_background: make a missing export in a child process, on torch meanwhile.

    Returns:
        The encoder; an `ExportedEncoder` when `export_cache` holds this request's export.

    Raises:
        UnknownEncoderError: unknown kind or model; the message lists the valid names.
        WeightsUnavailableError: weights neither cached nor downloadable, or a missing path.
        UnsupportedBackendError: the backend cannot run this encoder on this device or
            precision, is not installed, or cannot write `export_cache`; it names the fix.
        CalibrationError: `int8` without a calibration video, or one that cannot be read.

    Example: `create_encoder("clip", "tiny", weights="random", device="cpu").info.dim` is 64.
    """
    ref = parse_model_name(kind, model)
    named_device = None if device is None else str(device)
    runner = choose_backend(backend, ref.kind, device=named_device, precision=precision,
                            int8=int8, cached=export_cache is not None)  # fmt: skip
    frames = _calibration(calibration) if int8 else None
    build, runs_in = _builder(runner, ref, device, weights, precision)
    cache = None if export_cache is None else ExportCache(export_cache)
    request = _locator_request(cache, runner, frames, ref, weights, runs_in)
    if request is not None and (opened := _open_cached(runner, cache, request, build, runs_in)):
        return opened
    if not keeps_exports(export_cache):  # none to open, none to write: what runs (or why not)
        runner = _runner(backend, ref.kind, named_device, precision, int8, export_cache)
        build, runs_in = _builder(runner, ref, device, weights, precision)
    later = {"kind": ref.kind, "model": ref.name, "weights": weights, "device": named_device,
             "precision": precision, "int8": int8} if export_in_background else None  # fmt: skip
    return _built(runner, build(), cache, request, frames, runs_in, later)


def open_export(
    kind: str,
    model: str | None = None,
    *,
    weights: str = "pretrained",
    export_cache: str | os.PathLike[str],
    device: str | None = None,
    backend: str = "auto",
) -> ExportedEncoder | None:
    """The fp32 export `export_cache` holds for this encoder, opened without building the torch
    model and without exporting anything: for a short-lived reader (a search's one query),
    which gains from an export a run made and would lose seconds making one itself. Its image
    tower is compiled at its first run: a text query never pays for it.

    Args:
        kind, model, weights, device: as `create_encoder` takes them.
        export_cache: the folder `create_encoder` keeps exports in.
        backend: the backend whose export is opened; "auto": the one `create_encoder` picks
            first, then any other installed backend's (a run may have named its backend).

    Returns:
        The `ExportedEncoder`; None when `backend` runs on torch here (a CUDA device, no
        exporting backend installed) or no sound export answers: build the model then.

    Raises:
        UnknownEncoderError: unknown kind or model.
        WeightsUnavailableError: a local weights path that is missing.
        UnsupportedBackendError: a named backend that cannot run the encoder here.
    """
    ref = parse_model_name(kind, model)
    first = choose_backend(backend, ref.kind, device=device, precision="fp32", cached=True)
    if not hasattr(first, "open"):
        return None
    others = [] if backend != "auto" else [
        backend_named(name)
        for name in BACKENDS
        if name != first.name and unsupported_reason(name, ref.kind, device=device) is None
    ]  # fmt: skip
    cache = ExportCache(export_cache)
    for runner in (first, *(other for other in others if hasattr(other, "open"))):
        build, runs_in = _builder(runner, ref, device, weights, "fp32")
        request = _locator_request(cache, runner, None, ref, weights, runs_in)
        assert request is not None  # a cache and a runner that opens exports
        opened = _open_cached(runner, cache, request, build, runs_in, lazy_image=True)
        if opened is not None:
            return opened
    return None


def _built(
    runner: Any,
    encoder: Encoder,
    cache: ExportCache | None,
    request: ExportRequest | None,
    frames: Calibration | None,
    runs_in: str,
    later: dict[str, Any] | None = None,
) -> Encoder:
    """The torch `encoder`, on `runner`'s runtime when it has one (its export noted for the
    next run's warm start); with `later` (`create_encoder`'s arguments), an export still to be
    made is made by a child process, the encoder moved onto it when it is ready
    (`encoders.backends.background`)."""
    if later is not None and request is not None and keeps_exports(getattr(cache, "root", None)):
        assert cache is not None  # (a request is made for a cache)
        child = {**later, "backend": runner.name, "export_cache": str(cache.root)}
        if frames is not None:
            child |= {"calibration": str(frames.path), "calibration_frames": frames.frames}
        try:
            return _export_later(runner, encoder, cache, request, runs_in, child)
        except OSError as exc:  # no process can be started (memory, limits): export here
            logger.warning("cannot start a process to export in the background (%s): "
                           "exporting now", exc)  # fmt: skip
    if (runtime := runner.runtime(encoder, cache, int8=frames, precision=runs_in)) is not None:
        encoder.run_on(runtime)
        _remember(cache, request, runtime, encoder)
    return encoder


def _export_later(
    runner: Any,
    encoder: Encoder,
    cache: ExportCache,
    request: ExportRequest,
    runs_in: str,
    child: dict[str, Any],
) -> Encoder:
    """The torch `encoder`, with its export made by a child process (`create_encoder(**child)`)
    and its image tower moved onto it when the child is done."""

    def ready() -> None:
        found = find_export(cache, request)
        if found is None:
            raise FileNotFoundError(f"no sound export in {cache.root} answers the request")
        encoder.run_on(runner.open(found.folder, found.key, found.compiled, runs_in))
        mark_used(found.folder)

    # the export's key names the weights by this digest: what the run caches under it (its
    # label embeddings) the runs opened from the export find (0.3 s for ViT-B/32)
    encoder.note_weights_digest(state_dict_digest(encoder.module.state_dict().items()))
    export = f"{runner.name}{'' if request.variant == 'fp32' else ' int8'} export"
    job = BackgroundExport(child, f"{export} of {encoder.kind} {encoder.info.model!r}", ready)
    logger.info("%s %r runs on torch while process %d makes its %s (once: later runs open it)",
                encoder.kind, encoder.info.model, job.pid, export)  # fmt: skip
    return encoder


def _builder(
    runner: Any, ref: ModelRef, device: Any, weights: str, precision: str
) -> tuple[Callable[[], Encoder], str]:
    """What builds the torch model `runner` starts from, and the precision it computes in
    (OpenVINO: an fp32 export, computed in bf16 when asked). A local weights path is checked
    here, in milliseconds: the build imports torch first (seconds)."""
    if weights not in ("pretrained", "random"):
        local_weights_path(weights, f"{ref.kind} {ref.name!r}")
    device, built_in = runner.placement(device, precision)
    build = functools.partial(_build, ref, device, weights, built_in)
    return build, "bf16" if precision == "bf16" else built_in


def _build(ref: ModelRef, device: Any, weights: str, precision: str) -> Encoder:
    """The family's torch model; a load given up on (`encoders.abandon`) stops before and
    after it (a large model takes seconds to build, its export longer)."""
    check_abandoned()
    built = family(ref.kind).create(ref, device, weights=weights, precision=precision)
    check_abandoned()
    return built


def _runner(
    backend: str, kind: str, device: str | None, precision: str, int8: bool, export_cache: Any
) -> Any:
    """The backend that runs the encoder (`choose_backend`, told whether the cache can keep an
    export); one that exports, with a cache it cannot write, is refused with the fix."""
    cached = keeps_exports(export_cache)
    runner = choose_backend(backend, kind, device=device, precision=precision, int8=int8,
                            cached=cached)  # fmt: skip
    if export_cache is not None and not cached and backend == "auto" and runner.name == "torch":
        logger.warning(
            "the export cache %s cannot be written and holds no export for this model: "
            "backend 'auto' runs torch (a slower start and slower frames); make it writable, "
            "or run `streamer encoders export` where it can be written", export_cache,
        )  # fmt: skip
    if export_cache is not None and not cached and runner.name != "torch":
        raise UnsupportedBackendError(
            f"the export cache {str(export_cache)!r} cannot be written, and backend "
            f"{runner.name!r} keeps its export there: make it writable, point XDG_CACHE_HOME "
            "at a writable folder, or run with --no-cache (converts at every start)"
        )
    return runner


def _locator_request(
    cache: ExportCache | None,
    runner: Any,
    frames: Calibration | None,
    ref: ModelRef,
    weights: str,
    precision: str,
) -> ExportRequest | None:
    """What the locator files the export under, for a backend that opens exports: in fp32, or
    int8 calibrated on `frames` (the request names the calibration's variant); None: no warm
    path. The model is named as `parse_model_name` resolves it (the default model by its
    name), so a run that names it and one that does not, and an archive's record of it
    (`streamer search`), find one export. The precision named is the export's (the torch
    model's it is made from): one export serves every precision it is computed in (OpenVINO's
    bf16), so it is found for each."""
    if cache is None or not hasattr(runner, "open"):
        return None
    exported_in = runner.placement(None, precision)[1]
    variant = "fp32" if frames is None else frames.variant
    return request_for(ref.kind, ref.name, weights, runner.name, exported_in, variant)


def _remember(
    cache: ExportCache | None, request: ExportRequest | None, runtime: Any, encoder: Encoder
) -> None:
    """Note which export answers `request`, so the next run opens it without building."""
    key = getattr(runtime, "export_key", None)
    if cache is None or key is None:
        return
    mark_used(cache.folder(key))
    if request is not None:
        write_locator(cache, request, key, card_of(encoder))
    stale_note(cache, key)


def _open_cached(
    runner: Any,
    cache: ExportCache,
    request: ExportRequest,
    build: Callable[[], Encoder],
    precision: str,
    lazy_image: bool = False,
) -> ExportedEncoder | None:
    """The export that answers `request`, opened (to compute in `precision`) without building
    the model, its image tower compiled at its first run with `lazy_image`; None: a miss."""
    found = find_export(cache, request)
    if found is None:
        return None
    try:
        runtime = runner.open(found.folder, found.key, found.compiled, precision, lazy_image)
    except Exception as exc:  # the backend's reader raises its own types: build instead
        logger.warning("could not open the export %s (%s: %s): building the model",
                       found.folder, type(exc).__name__, exc)  # fmt: skip
        return None
    mark_used(found.folder)
    encoder = ExportedEncoder(runtime, found.card, build)
    logger.info("%s %r runs on %s (opened from the export cache, no torch model built)",
                encoder.kind, encoder.info.model, runtime.detail)  # fmt: skip
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
