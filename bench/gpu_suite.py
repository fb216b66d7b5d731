"""The GPU benchmark set of the speed issue, in one go, written as JSON and markdown.

Sections (each one's failure is recorded and the next one still runs):

  encoders    latency and throughput per batch size (1/4/64/256), per precision (fp16, bf16),
              eager vs CUDA graphs vs torch.compile, with each variant's embeddings checked
              against the eager forward (minimum cosine)
  upload      a batch of 720p uint8 frames host -> device, pageable vs pinned memory
  preprocess  the on-device resize/crop/normalise of that batch, and uint8 frames -> embeddings
              end to end (staging, upload, preprocessing, forward), checked against the CPU
  decode      PyAV decode of the clip with thread_type AUTO vs NONE, and NVDEC where it works
  pipeline    the file pipeline with every frame analysed, against the decode floor (and with
              NVDEC decoding where `--hwaccel` exists and CUDA works)
  oom         a real CUDA out-of-memory (a per-process memory cap below what a big batch of 720p
              frames needs): the batch is split, later batches are capped, embeddings equal the
              uncapped run's; with a cap nothing fits under, the encoder falls back to the CPU
  targets     the issue's GPU targets for ViT-B/32, met or missed (only on CUDA)
  streams     N live streams (--streams 32, --stream-size 1920x1080, 25 fps) through the
              pipeline in this process, measured for --stream-seconds (20) once every stream
              delivers: a synthetic H.264 clip played by every stream as a live camera, JSON
              Lines out (no video encode), NVDEC where it works, decode in threads (or in
              --stream-decode-workers processes); per stream fps, analysed, drops, latency
              p50/p95/p99; delivered fps against N x 25, the slowest stream, the worst p95, and
              the CPU cores the process kept busy (decode on the cores or the GPU: which limits)

On a lent GPU:      bench/gpu.sh [OUT]          (installs the carried wheels, then this)
Here, on the CPU:   python bench/gpu_suite.py --device cpu --quick --out /tmp/gpu
Only the streams:   python bench/gpu_suite.py --device cpu --quick --sections streams

`--max-seconds` is checked before each section starts: the streams come last, so a long run of
the others can skip them (raise it, or pick `--sections`).

Random weights throughout: speed does not depend on them. A partial result is written after
every section, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench._entry import run_script  # noqa: E402
from encoders import create_encoder, list_encoders  # noqa: E402
from encoders.acceleration import Acceleration  # noqa: E402
from encoders.preprocess import preprocess_frames  # noqa: E402
from streamer import AnalysisConfig  # noqa: E402
from streamer.analysis.worker import EncoderChoice, load_encoder  # noqa: E402
from streamer.bench.clips import looped_clip, synthetic_clip  # noqa: E402
from streamer.bench.encoders import parse_encoder_spec  # noqa: E402
from streamer.bench.file import ModeConfig, spawn  # noqa: E402
from streamer.bench.live import LiveRun, SteadyResult, measure  # noqa: E402
from streamer.bench.measure import machine_line, time_runs  # noqa: E402

VARIANTS = ("eager", "cuda-graphs", "compile", "compile-graphs", "autotune-graphs")
#: what each variant asks of `Acceleration` (compile-graphs: each padded batch size compiled
#: statically, inside the CUDA graphs; autotune-graphs: the same with inductor's max-autotune,
#: which also times Triton GEMM templates against cuBLAS: minutes of compiling)
ACCELERATIONS = {
    "eager": Acceleration(cuda_graphs=False),
    "cuda-graphs": Acceleration(cuda_graphs=True),
    "compile": Acceleration(cuda_graphs=False, compile=True),
    "compile-graphs": Acceleration(cuda_graphs=True, compile=True),
    "autotune-graphs": Acceleration(
        cuda_graphs=True, compile=True, compile_mode="max-autotune-no-cudagraphs"
    ),
}
GRAPH_VARIANTS = ("cuda-graphs", "compile-graphs", "autotune-graphs")
SECTIONS = ("encoders", "upload", "preprocess", "oom", "decode", "pipeline", "streams")
TARGET_MODEL = "clip:ViT-B/32"
# A quick run's vocabulary: the default one's ~100 text embeddings take seconds on a CPU.
QUICK_LABELS = ("a person", "a rabbit", "a tree", "a meadow", "the sky", "a bird")
STREAM_FPS = 25  # the streams section's cameras
# Seconds of clip beyond the measured window: the streams start within a second or two of each
# other, and the window opens once the last one delivers; a stream whose file ran out before
# the window closed would count as slow.
STREAM_MARGIN_S = 8.0


@dataclass(frozen=True)
class Plan:
    """What one run of the suite measures (from the flags; `--quick` shrinks everything)."""

    device: str
    quick: bool
    models: tuple[str, ...]
    batches: tuple[int, ...]
    precisions: tuple[str, ...]
    variants: tuple[str, ...]
    seconds: float
    frames: int
    clip: str
    loops: int
    trim: float | None
    labels: tuple[str, ...] | None
    max_seconds: float
    sections: tuple[str, ...] = SECTIONS
    streams: int = 32
    stream_size: tuple[int, int] = (1920, 1080)
    stream_seconds: float = 20.0
    stream_decode_workers: int | str = 0

    @property
    def cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    def sync(self) -> Callable[[], None] | None:
        return (lambda: torch.cuda.synchronize(self.device)) if self.cuda else None


def make_plan(args: argparse.Namespace) -> Plan:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(device).type == "cuda"
    full_batches = (1, 4, 64, 256) if cuda else (1, 4, 16)
    precisions = ("fp16", "bf16") if cuda else (("fp32",) if args.quick else ("fp32", "bf16"))
    # Compiling on a CPU takes minutes: not in a quick run unless asked for.
    if cuda:  # autotune-graphs only when asked: its compiling takes minutes per batch size
        variants: tuple[str, ...] = ("eager", "cuda-graphs", "compile-graphs")
    else:
        variants = ("eager", "cuda-graphs") if args.quick else ("eager", "compile")
    return Plan(
        device=device,
        quick=args.quick,
        models=tuple(args.models.split(",")) if args.models else (TARGET_MODEL,),
        batches=tuple(int(b) for b in args.batches.split(","))
        if args.batches
        else ((1, 4) if args.quick else full_batches),
        precisions=tuple(args.precisions.split(",")) if args.precisions else precisions,
        variants=_choices(args.variants, VARIANTS, "--variants") if args.variants else variants,
        seconds=args.seconds if args.seconds else (0.3 if args.quick else 1.0),
        frames=2 if args.quick else 16,
        clip=str(args.clip or _default_clip()),
        loops=args.loops or (1 if args.quick else 4),
        trim=2.0 if args.quick else None,
        labels=QUICK_LABELS if args.quick else None,
        max_seconds=args.max_seconds,
        sections=_choices(args.sections, SECTIONS, "--sections") if args.sections else SECTIONS,
        streams=args.streams or (2 if args.quick else 32),
        stream_size=_size(args.stream_size or ("640x360" if args.quick else "1920x1080")),
        stream_seconds=args.stream_seconds or (6.0 if args.quick else 20.0),
        stream_decode_workers=_workers(args.stream_decode_workers),
    )


def _choices(text: str, valid: tuple[str, ...], flag: str) -> tuple[str, ...]:
    chosen = tuple(text.split(","))
    unknown = [c for c in chosen if c not in valid]
    if unknown:
        wrong, known = ", ".join(unknown), ", ".join(valid)
        raise SystemExit(f"gpu_suite: {flag}: unknown {wrong}; valid: {known}")
    return chosen


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) % 2 or int(height) % 2:
        raise SystemExit(f"gpu_suite: --stream-size must be WIDTHxHEIGHT, both even, got {text!r}")
    return int(width), int(height)


def _workers(text: str) -> int | str:
    if text == "auto" or text.isdigit():
        return text if text == "auto" else int(text)
    raise SystemExit(f"gpu_suite: --stream-decode-workers must be a number or auto, got {text!r}")


def _default_clip() -> Path:
    carried = REPO / ".cache" / "samples" / "bigbuckbunny.mp4"
    if carried.is_file():
        return carried
    from streamer.core.samples import sample_clip

    return sample_clip()


# -- encoders ----------------------------------------------------------------------------------


def section_encoders(plan: Plan) -> dict:
    """Every model x precision x variant; compile only for the first model and precision."""
    rows = []
    for m, model in enumerate(plan.models):
        for p, precision in enumerate(plan.precisions):
            for variant in plan.variants:
                if variant.startswith(("compile", "autotune")) and (m or p):
                    continue  # compiling costs about a minute per shape; once is enough
                rows.append(encoder_row(plan, model, precision, variant))
                # each row as it comes, so a run cut short by its time limit still says it
                print(f"gpu_suite: row {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
                _free(plan)  # the encoder of the row is gone: give its memory back
    return {"rows": rows}


def encoder_row(plan: Plan, model: str, precision: str, variant: str) -> dict:
    row: dict = {"model": model, "precision": precision, "variant": variant}
    if variant in GRAPH_VARIANTS and not plan.cuda:
        return {**row, "skipped": "CUDA graphs need a CUDA device"}
    kind, name = parse_encoder_spec(model)
    encoder = create_encoder(kind, name, weights="random", device=plan.device, precision=precision)
    size = encoder.preprocess_cfg.size
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(max(plan.batches), 3, size, size, generator=generator)
    pixels = pixels.to(plan.device, encoder.dtype)
    encoder.accelerate(ACCELERATIONS[variant])
    started = time.perf_counter()
    encoder.warm_up(plan.batches)  # records the graphs / compiles every shape
    _sync(plan)
    row["prepare_s"] = time.perf_counter() - started
    row["ms"], row["img_s"] = {}, {}
    for batch in plan.batches:
        timing = time_runs(lambda b=batch: encoder.embed(pixels[:b]), seconds=plan.seconds,
                           sync=plan.sync())  # fmt: skip
        row["ms"][batch] = timing.median_ms
        row["img_s"][batch] = batch / timing.median_s
    row["speedups"] = encoder.info.speedups  # "eager" here means a fallback happened
    check = pixels[: min(4, len(pixels))]
    fast = encoder.embed(check).float()
    encoder.accelerate(Acceleration(cuda_graphs=False))
    eager = encoder.embed(check).float()
    row["min_cos_vs_eager"] = float(F.cosine_similarity(fast, eager).min())
    return row


# -- upload and preprocessing ------------------------------------------------------------------


def _clip_frames(plan: Plan, count: int) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(plan.clip) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


def section_upload(plan: Plan) -> dict:
    if not plan.cuda:
        return {"skipped": "host-to-device copies need a CUDA device"}
    frames = torch.from_numpy(np.stack(_clip_frames(plan, plan.frames)))
    gigabytes = frames.numel() / 1e9
    pageable = time_runs(lambda: frames.to(plan.device), seconds=plan.seconds, sync=plan.sync())
    pinned_frames = frames.pin_memory()
    pinned = time_runs(lambda: pinned_frames.to(plan.device, non_blocking=True),
                       seconds=plan.seconds, sync=plan.sync())  # fmt: skip
    return {
        "frames": list(frames.shape),
        "pageable_ms": pageable.median_ms,
        "pinned_ms": pinned.median_ms,
        "pageable_gb_s": gigabytes / pageable.median_s,
        "pinned_gb_s": gigabytes / pinned.median_s,
    }


def section_preprocess(plan: Plan) -> dict:
    kind, name = parse_encoder_spec(plan.models[0])
    encoder = create_encoder(kind, name, weights="random", device=plan.device)
    encoder.accelerate(Acceleration())  # the streamer's default
    frames = _clip_frames(plan, plan.frames)
    on_device = torch.from_numpy(np.stack(frames)).to(plan.device)
    cfg, dtype = encoder.preprocess_cfg, encoder.dtype
    prep = time_runs(lambda: preprocess_frames(on_device, cfg, on_device.device, dtype),
                     seconds=plan.seconds, sync=plan.sync())  # fmt: skip
    end_to_end = time_runs(lambda: encoder.embed(frames), seconds=plan.seconds, sync=plan.sync())
    result = {
        "frames": [len(frames), *frames[0].shape],
        "model": plan.models[0],
        "dtype": str(dtype).removeprefix("torch."),
        "preprocess_on_device_ms": prep.median_ms,
        "frames_to_embeddings_ms": end_to_end.median_ms,
        "frames_to_embeddings_fps": len(frames) / end_to_end.median_s,
    }
    if plan.cuda:  # the same random weights in fp32 on the CPU: the reference
        reference = create_encoder(kind, name, weights="random", device="cpu", precision="fp32")
        cos = F.cosine_similarity(encoder.embed(frames).float().cpu(), reference.embed(frames))
        result["min_cos_vs_cpu_fp32"] = float(cos.min())
    return result


# -- decode and the pipeline -------------------------------------------------------------------


def _decode_fps(path: str, thread_type: str, rgb: bool, hwaccel: object | None = None) -> float:
    import av

    kwargs = {"hwaccel": hwaccel} if hwaccel is not None else {}
    with av.open(path, **kwargs) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        started, count = time.perf_counter(), 0
        for frame in container.decode(stream):
            if rgb:
                frame.to_ndarray(format="rgb24")
            count += 1
    return count / (time.perf_counter() - started)


def section_decode(plan: Plan, clip: str) -> dict:
    result: dict = {}
    for thread_type in ("AUTO", "NONE"):
        result[f"{thread_type} decode fps"] = _decode_fps(clip, thread_type, rgb=False)
        result[f"{thread_type} decode+rgb24 fps"] = _decode_fps(clip, thread_type, rgb=True)
    if not plan.cuda:
        result["NVDEC"] = "skipped: needs a CUDA device"
        return result
    try:
        from av.codec.hwaccel import HWAccel

        nvdec = HWAccel("cuda", allow_software_fallback=False)
        result["NVDEC decode fps"] = _decode_fps(clip, "AUTO", rgb=False, hwaccel=nvdec)
        result["NVDEC decode+rgb24 fps"] = _decode_fps(clip, "AUTO", rgb=True, hwaccel=nvdec)
    except Exception as exc:  # reported, not fatal: NVDEC is optional
        result["NVDEC"] = f"unavailable: {type(exc).__name__}: {exc}"
    try:
        result.update(_nvdec_on_device(plan, clip))
    except Exception as exc:
        result["NVDEC on device"] = f"failed: {type(exc).__name__}: {str(exc)[:500]}"
    return result


def _nvdec_on_device(plan: Plan, clip: str) -> dict:
    """NVDEC frames kept on the GPU (`is_hw_owned`) and read through DLPack: decode + RGB on
    the device, then + the encoder's preprocessing, and the first frame against the CPU's
    RGB (mean absolute difference in levels)."""
    import av
    from av.codec.hwaccel import HWAccel

    from streamer.sources.device_frames import device_rgb

    kind, model = TARGET_MODEL.split(":", 1)
    cfg = next(s.preprocess for s in list_encoders() if (s.kind, s.model) == (kind, model))
    device = torch.device(plan.device)
    result: dict = {}
    for label, prepare in (("rgb", False), ("rgb+preprocess", True)):
        owned = HWAccel("cuda", allow_software_fallback=False, is_hw_owned=True)
        with av.open(clip, hwaccel=owned) as container:
            stream = container.streams.video[0]
            started, count = time.perf_counter(), 0
            for frame in container.decode(stream):
                rgb = device_rgb(frame)
                if prepare:
                    preprocess_frames(rgb[None], cfg, device, torch.float16)
                if count == 0:
                    first = rgb
                count += 1
            _sync(plan)
            result[f"NVDEC on device, {label} fps"] = count / (time.perf_counter() - started)
    with av.open(clip) as container:
        cpu = next(container.decode(video=0)).to_ndarray(format="rgb24")
    gap = (first.cpu().to(torch.int16) - torch.from_numpy(cpu).to(torch.int16)).abs()
    result["NVDEC on device, first frame vs CPU (mean levels)"] = gap.float().mean().item()
    result["NVDEC on device, frame device"] = str(first.device)
    return result


def section_pipeline(plan: Plan, clip: str, folder: Path) -> dict:
    model = parse_encoder_spec(plan.models[0])
    if model[0] != "clip":
        return {"skipped": f"the pipeline rows use a CLIP model, got {plan.models[0]}"}
    runs = {"floor": ("floor", "none"), "pipeline, every frame": ("pipeline", "none")}
    if plan.cuda:
        runs["pipeline, every frame, NVDEC"] = ("pipeline", "cuda")
    result: dict = {}
    for label, (mode, hwaccel) in runs.items():
        config = ModeConfig(mode=mode, clip=clip, out=str(folder / f"{mode}-{hwaccel}.mp4"),
                            model=model[1] or "ViT-B/32", device=plan.device, preset="veryfast",
                            analyze_fps=None, text_cache=str(folder / "text"),
                            hwaccel=hwaccel, labels=plan.labels)  # fmt: skip
        try:
            result[label] = asdict(spawn(config))
        except Exception as exc:  # one failed row (e.g. no --hwaccel yet) keeps the others
            result[label] = {"error": str(exc)[-2000:]}
    floor = result["floor"].get("fps")
    for label, row in result.items():
        if floor and "fps" in row and label != "floor":
            row["ratio_to_floor"] = row["fps"] / floor
    return result


# -- a real out-of-memory -----------------------------------------------------------------------


def section_oom(plan: Plan) -> dict:
    """The reliability issue's "CUDA out of memory -> smaller batches, then CPU" on a real GPU.

    The CPU tests inject the error; here the caching allocator raises it for real, under
    `torch.cuda.set_per_process_memory_fraction`, inside preprocessing or the forward.
    """
    if not plan.cuda:
        return {"skipped": "a real out-of-memory needs a CUDA device"}
    import logging

    kind, name = parse_encoder_spec(plan.models[0])
    frames = np.stack(_clip_frames(plan, 16))
    batch = np.concatenate([frames] * (128 // len(frames)))  # 128 frames of 720p
    device = torch.device(plan.device)
    if device.index is None:  # set_per_process_memory_fraction wants an index
        device = torch.device("cuda", torch.cuda.current_device())
    total = torch.cuda.get_device_properties(device).total_memory
    warnings: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage()[:300])

    handler = Keep()
    logging.getLogger().addHandler(handler)
    result: dict = {"frames": list(batch.shape)}
    try:
        for variant, graphs in (("eager", False), ("cuda-graphs", True)):
            encoder = create_encoder(kind, name, weights="random", device=plan.device,
                                     precision="fp16")  # fmt: skip
            encoder.accelerate(Acceleration(cuda_graphs=graphs))
            _free(plan)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            reference = encoder.embed(list(batch)).float().cpu()
            peak = torch.cuda.max_memory_allocated(device)
            _free(plan)
            # Room for about a tenth of the batch above what is held now.
            held = torch.cuda.memory_reserved(device)
            cap = held + (peak - base) // 10
            torch.cuda.set_per_process_memory_fraction(cap / total, device)
            warnings.clear()
            started = time.perf_counter()
            try:
                capped = encoder.embed(list(batch)).float().cpu()
                row = {
                    "peak_mb_uncapped": (peak - base) / 2**20,
                    "cap_mb_above_held": (cap - held) / 2**20,
                    "batch_limit_after": encoder.batch_limit,
                    "device_after": str(encoder.device),
                    "min_cos_vs_uncapped": float(F.cosine_similarity(capped, reference).min()),
                    "seconds": time.perf_counter() - started,
                    "warnings": list(warnings),
                }
                again = time.perf_counter()
                encoder.embed(list(batch))  # capped from the start: no new out-of-memory expected
                row["second_batch_s"] = time.perf_counter() - again
                row["warnings_second_batch"] = len(warnings) - len(row["warnings"])
            except Exception as exc:
                row = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
            finally:
                torch.cuda.set_per_process_memory_fraction(1.0, device)
            result[variant] = row
            del encoder
            _free(plan)
        # Nothing fits: a cap at what the weights hold already -> the CPU, fp32.
        encoder = create_encoder(kind, name, weights="random", device=plan.device,
                                 precision="fp16")  # fmt: skip
        encoder.accelerate(Acceleration(cuda_graphs=False))
        small = list(batch[:4])
        reference = encoder.embed(small).float().cpu()
        _free(plan)
        torch.cuda.set_per_process_memory_fraction(
            (torch.cuda.memory_reserved(device) + 2**20) / total, device
        )
        warnings.clear()
        try:
            out = encoder.embed(small).float().cpu()
            result["nothing fits"] = {
                "device_after": str(encoder.device),
                "dtype_after": str(encoder.dtype),
                "min_cos_vs_gpu_fp16": float(F.cosine_similarity(out, reference).min()),
                "warnings": list(warnings),
            }
        except Exception as exc:
            result["nothing fits"] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    finally:
        logging.getLogger().removeHandler(handler)
        _free(plan)
    return result


# -- live streams ------------------------------------------------------------------------------


def section_streams(plan: Plan, folder: Path) -> dict:
    """`plan.streams` live cameras of `plan.stream_size` at 25 fps, in this process.

    One synthetic clip, played by every stream (`NAME=PATH` names them cam01, cam02, ...) as
    a live camera: paced at its frame rate, freshest frame winning. JSON Lines out only, so
    the run decodes, analyses and writes records; N video encodes would measure x264. NVDEC
    first where CUDA is (its error recorded, then the CPU).
    """
    kind, model = parse_encoder_spec(plan.models[0])
    work = folder / "streams"
    work.mkdir()
    clip_s = plan.stream_seconds + STREAM_MARGIN_S
    started = time.monotonic()
    codec = synthetic_clip(work / "clip.mp4", plan.stream_size, clip_s, STREAM_FPS)
    width, height = plan.stream_size
    result: dict = {
        "streams": plan.streams, "size": f"{width}x{height}", "fps_each": STREAM_FPS,
        "model": plan.models[0], "decode_workers": plan.stream_decode_workers,
        "clip": {"encoder": codec, "seconds": clip_s, "made_s": time.monotonic() - started},
    }  # fmt: skip
    width_digits = max(2, len(str(plan.streams)))
    inputs = [f"cam{i:0{width_digits}d}={work / 'clip.mp4'}" for i in range(1, plan.streams + 1)]
    choice = EncoderChoice(kind=kind, model=model, weights="random", device=plan.device)
    encoder = load_encoder(choice)  # as `streamer run` loads it (CUDA graphs on CUDA)
    analysis = AnalysisConfig(labels=plan.labels, text_cache=str(work / "text"))
    # The steady state: the graphs of the batch sizes the run will send (up to max_batch)
    # recorded now, not in the measured window.
    encoder.warm_up(sorted({1, 4, analysis.batch.max_batch}))
    result["encoder"] = {"device": str(encoder.device), "dtype": str(encoder.dtype),
                         "speedups": encoder.info.speedups}  # fmt: skip
    for hwaccel in ("cuda", "none") if plan.cuda else ("none",):
        run = LiveRun(live=True, video=False, hwaccel=hwaccel, analysis=analysis,
                      decode_workers=plan.stream_decode_workers)  # fmt: skip
        out = work / f"out-{hwaccel}"
        out.mkdir()
        try:
            with _SourceLog() as log:
                measured = measure(inputs, encoder, plan.stream_seconds, out, run)
        except Exception as exc:  # NVDEC refused at start: recorded, then the CPU decodes
            if hwaccel == "none":
                raise
            result["nvdec_error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
            continue
        failed = [r.error for r in measured.rows if r.error]
        if failed and hwaccel != "none":
            result["nvdec_error"] = f"{len(failed)} streams failed, e.g. {failed[0][:500]}"
            continue
        result["hwaccel"] = hwaccel
        result["decoded_on_cpu_instead"] = log.on_cpu  # NVDEC asked, the codec fell back
        result["log"] = log.lines[:20]
        break
    del encoder
    _free(plan)
    return {**result, **streams_figures(measured, plan.streams * STREAM_FPS)}


def streams_figures(measured: SteadyResult, target_fps: float) -> dict:
    """The per-stream rows and what they add up to (the section's figures)."""
    rows = measured.rows
    slowest = min(rows, key=lambda r: r.fps)
    worst = max(rows, key=lambda r: r.latency_ms[1])
    total = sum(r.fps for r in rows)
    cores = os.cpu_count() or 1
    busy = measured.cpu_s / measured.window_s
    return {
        "window_s": measured.window_s,
        "settle_s": measured.settle_s,
        "delivered_fps_total": total,
        "target_fps_total": target_fps,
        "delivered_share": total / target_fps,
        "slowest_stream": {"stream": slowest.stream, "fps": slowest.fps},
        "worst_p95_ms": {"stream": worst.stream, "ms": worst.latency_ms[1]},
        "drops_total": sum(r.dropped for r in rows),
        "frames_total": sum(r.frames for r in rows),
        "analysed_total": sum(r.analysed for r in rows),
        "failed_streams": sum(1 for r in rows if r.error),
        "cpu": {"seconds_in_window": measured.cpu_s, "cores_busy": busy, "cores": cores,
                "share_of_cores": busy / cores, "child_processes_s": measured.child_cpu_s},
        "per_stream": [
            {"stream": r.stream, "frames": r.frames, "fps": r.fps, "analysed": r.analysed,
             "dropped": r.dropped, "p50_ms": r.latency_ms[0], "p95_ms": r.latency_ms[1],
             "p99_ms": r.latency_ms[2], "error": r.error}
            for r in rows
        ],
    }  # fmt: skip


class _SourceLog(logging.Handler):
    """What the sources log during a run (info and up), to tell whether NVDEC decoded: a
    stream whose codec has no NVDEC decoder says it decodes on the CPU instead."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.on_cpu = 0
        self._logger = logging.getLogger("streamer.sources")
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.on_cpu += "decoding it on the CPU" in message
        self.lines.append(message[:300])

    def __enter__(self) -> _SourceLog:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


# -- targets, running and writing --------------------------------------------------------------


def section_targets(plan: Plan, encoders: dict) -> dict:
    if not plan.cuda:
        return {"status": "not yet measured: no GPU in this run"}
    rows = [
        r
        for r in encoders.get("rows", [])
        if r["model"] == TARGET_MODEL and "ms" in r and r["precision"] in ("fp16", "bf16")
    ]
    if not rows:
        return {"status": f"not measured: no {TARGET_MODEL} fp16/bf16 rows"}

    def best(key: str, batch: int, pick: Callable) -> tuple[float, str] | None:
        have = [(r[key][batch], f"{r['precision']} {r['speedups']}") for r in rows
                if batch in r[key]]  # fmt: skip
        return pick(have, key=lambda v: v[0]) if have else None

    targets = {}
    for name, key, batch, pick, ok in (
        ("batch 4 latency <= 1 ms", "ms", 4, min, lambda v: v <= 1.0),
        ("batch 64 >= 25k img/s", "img_s", 64, max, lambda v: v >= 25_000),
        ("batch 256 >= 35k img/s", "img_s", 256, max, lambda v: v >= 35_000),
    ):
        found = best(key, batch, pick)
        targets[name] = (
            {"status": "not measured"}
            if found is None
            else {"value": found[0], "by": found[1], "status": "met" if ok(found[0]) else "missed"}
        )
    return targets


def run_suite(plan: Plan, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "machine": machine_line(torch.device(plan.device)),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "plan": asdict(plan),
        "sections": {},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        folder = Path(tmp)
        clip = ""  # the looped sample, for the sections that decode it
        if {"decode", "pipeline"} & set(plan.sections):
            clip = str(looped_clip(plan.clip, 0, folder / "clip.mp4", plan.loops, plan.trim)[0])
        steps: list[tuple[str, Callable[[], dict]]] = [
            ("encoders", lambda: section_encoders(plan)),
            ("upload", lambda: section_upload(plan)),
            ("preprocess", lambda: _then_free(plan, section_preprocess(plan))),
            ("oom", lambda: section_oom(plan)),
            ("decode", lambda: section_decode(plan, clip)),
            ("pipeline", lambda: section_pipeline(plan, clip, folder)),
            ("streams", lambda: section_streams(plan, folder)),
        ]
        for name, step in steps:
            if name not in plan.sections:
                results["sections"][name] = {"skipped": "not in --sections"}
                continue
            if time.monotonic() - started > plan.max_seconds:
                results["sections"][name] = {"skipped": f"over --max-seconds {plan.max_seconds}"}
                continue
            print(f"gpu_suite: {name} ...", file=sys.stderr, flush=True)
            section_started = time.monotonic()
            try:
                results["sections"][name] = step()
            except Exception as exc:  # recorded: one broken section must not lose the others
                results["sections"][name] = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-4000:],
                }
            results["sections"][name]["seconds"] = time.monotonic() - section_started
            _write(results, out)
    results["sections"]["targets"] = section_targets(plan, results["sections"]["encoders"])
    _write(results, out)
    return results


def _write(results: dict, out: Path) -> None:
    (out / "gpu_suite.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "gpu_suite.md").write_text(markdown(results) + "\n")


def markdown(results: dict) -> str:
    sections = results["sections"]
    lines = [f"# GPU suite, {results['date']}", "", f"Machine: {results['machine']}.", ""]
    enc = sections.get("encoders", {})
    if "rows" in enc:
        batches = results["plan"]["batches"]
        lines += ["| model | precision | variant (in use) | prepare s | "
                  + " | ".join(f"b{b} ms" for b in batches) + " | "
                  + " | ".join(f"b{b} img/s" for b in batches) + " | min cos vs eager |",
                  "|---|---|---|---:|" + "---:|" * (2 * len(batches) + 1)]  # fmt: skip
        for r in enc["rows"]:
            if "skipped" in r:
                lines.append(f"| {r['model']} | {r['precision']} | {r['variant']} | "
                             f"{r['skipped']} |")  # fmt: skip
                continue
            ms = " | ".join(f"{r['ms'][b]:.3f}" for b in batches)
            ips = " | ".join(f"{r['img_s'][b]:.0f}" for b in batches)
            lines.append(f"| {r['model']} | {r['precision']} | {r['variant']} ({r['speedups']})"
                         f" | {r['prepare_s']:.1f} | {ms} | {ips} | "
                         f"{r['min_cos_vs_eager']:.5f} |")  # fmt: skip
        lines.append("")
    for name in ("upload", "preprocess", "decode", "pipeline", "oom", "targets"):
        if name == "encoders" or name not in sections:
            continue
        lines += [f"## {name}", "", "```", json.dumps(sections[name], indent=1, default=str)[:4000],
                  "```", ""]  # fmt: skip
    if "error" in enc:
        lines += ["## encoders", "", "```", enc["error"], "```"]
    if "streams" in sections:
        lines += streams_markdown(sections["streams"])
    return "\n".join(lines)


def streams_markdown(section: dict) -> list[str]:
    """The streams section: what ran, the totals, then a row per stream."""
    if "per_stream" not in section:  # skipped or failed: as the other sections
        return ["## streams", "", "```", json.dumps(section, indent=1, default=str)[:4000], "```"]
    s, cpu = section, section["cpu"]
    nvdec = f"; NVDEC refused: {s['nvdec_error']}" if "nvdec_error" in s else ""
    lines = [
        "## streams", "",
        f"{s['streams']} live streams {s['size']} at {s['fps_each']} fps (one "
        f"{s['clip']['encoder']} clip, paced as cameras), {s['model']} on {s['encoder']['device']} "
        f"({s['encoder']['dtype']}, {s['encoder']['speedups']}), decode: hwaccel {s['hwaccel']}, "
        f"{s['decode_workers']} decode workers{nvdec}; JSON Lines out, no video encode. "
        f"Window {s['window_s']:.1f} s, opened {s['settle_s']:.1f} s after the start.", "",
        f"- delivered: **{s['delivered_fps_total']:.1f} fps** of {s['target_fps_total']:.0f} "
        f"({100 * s['delivered_share']:.1f} %); slowest stream {s['slowest_stream']['stream']} "
        f"at {s['slowest_stream']['fps']:.1f} fps",
        f"- worst p95 latency: {s['worst_p95_ms']['ms']:.0f} ms ({s['worst_p95_ms']['stream']}); "
        f"drops: {s['drops_total']}; analysed: {s['analysed_total']}; failed streams: "
        f"{s['failed_streams']}",
        f"- CPU: {cpu['cores_busy']:.2f} of {cpu['cores']} cores busy in the window "
        f"({100 * cpu['share_of_cores']:.0f} %); decode worker processes "
        f"{cpu['child_processes_s']:.1f} CPU s over the whole run", "",
        "| stream | frames | fps | analysed | drops | p50 ms | p95 ms | p99 ms | error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for r in s["per_stream"]:
        lines.append(f"| {r['stream']} | {r['frames']} | {r['fps']:.1f} | {r['analysed']} | "
                     f"{r['dropped']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['error'] or ''} |")  # fmt: skip
    return [*lines, ""]


def _sync(plan: Plan) -> None:
    if plan.cuda:
        torch.cuda.synchronize(plan.device)


def _then_free(plan: Plan, result: dict) -> dict:
    _free(plan)
    return result


def _free(plan: Plan) -> None:
    import gc

    gc.collect()
    if plan.cuda:
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", help="cuda | cuda:N | cpu (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a check, not numbers")
    parser.add_argument(
        "--out",
        default=os.environ.get("OUT") or "gpu-results",
        help="folder for gpu_suite.json and gpu_suite.md (default: $OUT, else gpu-results)",
    )
    parser.add_argument("--models", help=f"comma-separated kind:model (default {TARGET_MODEL})")
    parser.add_argument("--batches", help="comma-separated batch sizes")
    parser.add_argument("--precisions", help="comma-separated: fp16, bf16, fp32")
    parser.add_argument("--variants", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--sections", help=f"comma-separated: {', '.join(SECTIONS)} (default all)")
    parser.add_argument("--seconds", type=float, help="time per measurement")
    parser.add_argument("--clip", help="video for decode and the pipeline (default: the sample)")
    parser.add_argument("--loops", type=int, help="clip repeated (default 4; quick: 1)")
    parser.add_argument("--streams", type=int, help="live streams (default 32; quick: 2)")
    parser.add_argument(
        "--stream-size", help="the streams' WIDTHxHEIGHT (default 1920x1080; quick: 640x360)"
    )
    parser.add_argument(
        "--stream-seconds",
        type=float,
        help="measured seconds of the streams (default 20; quick: 6)",
    )
    parser.add_argument(
        "--stream-decode-workers",
        default="0",
        help="decode processes for the streams, N or auto (default 0: threads of this process)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=480.0,
        help="skip the sections that would start after this many seconds (default 480)",
    )
    args = parser.parse_args(argv)
    plan = make_plan(args)
    print(f"gpu_suite: {platform.node()} {plan.device}: {plan}", file=sys.stderr)
    results = run_suite(plan, Path(args.out))
    print(markdown(results))
    failed = [n for n, s in results["sections"].items() if isinstance(s, dict) and "error" in s]
    return 1 if failed else 0


if __name__ == "__main__":
    run_script(main)
