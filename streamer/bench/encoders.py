"""`streamer bench encoders`: the encoder table for the machine it runs on.

For each encoder: parameters, size of the weights in the dtype it runs in (on another backend
than torch: the size on disk of the export it runs, int8 or fp32), median latency of a batch
of 1 and of 4, the batch size with the highest throughput and that throughput, and the
peak memory of loading and running it (its library loaded before; on an exporting backend,
from the export cache, as every run after the first). Random weights: speed and memory do not
depend on what the weights are, and nothing has to be downloaded.

By default the input is model input already on the device (normalised Bx3xSxS): the encoder
alone. `frame_size` measures uint8 frames from the host instead: staging, upload and the
on-device preprocessing included, as the pipeline feeds it. `backend` measures another runtime
of the image tower (`--backend openvino`); `bench/backends.py` puts two side by side.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

import encoders
from encoders.acceleration import Acceleration
from encoders.base import resolve_device
from streamer.bench.measure import PeakMemory, machine_line, time_runs

__all__ = [
    "CPU_ENCODERS",
    "EncoderRow",
    "bench_encoder",
    "default_batches",
    "default_encoders",
    "markdown_table",
    "parse_encoder_spec",
]

log = logging.getLogger("streamer.bench")

# What a CPU measures in a few minutes; the rest (ViT-L, DINOv2 large/giant) with --all.
CPU_ENCODERS = ("clip:ViT-B/32", "clip:ViT-B/16", "dinov2:small", "dinov2:base", "default")
ALL_ENCODERS = (
    "clip:ViT-B/32",
    "clip:ViT-B/16",
    "clip:ViT-L/14",
    "clip:ViT-L/14@336px",
    "dinov2:small",
    "dinov2:base",
    "dinov2:large",
    "dinov2:giant",
    "default",
)


@dataclass(frozen=True)
class EncoderRow:
    """One encoder's measurements.

    Attributes:
        encoder: "kind:model" as given.
        device, dtype, speedups, backend: where and how it ran (`EncoderInfo`).
        params_m: parameters in millions (CLIP: image and text towers).
        size_mb: torch: the weights in memory, in the dtype it ran in (CLIP: both towers);
            another backend: the files of the image tower's export it ran, on disk (int8 or
            fp32); None: converted in memory, nothing on disk.
        latency_ms: median milliseconds per batch, by batch size.
        throughput: images per second, by batch size.
        peak_mb: peak memory of loading and running it; memory_kind says how it was measured.
        input: "model input" or "uint8 frames WxH".
        random_weights: the weights were random (speed does not depend on them).
        threads: on a CPU, the threads it ran with (torch's count, which OpenVINO and ONNX
            Runtime are compiled with): throughput / threads is its rate per core; None on a GPU.
    """

    encoder: str
    device: str
    dtype: str
    speedups: str
    params_m: float
    size_mb: float | None
    latency_ms: dict[int, float] = field(default_factory=dict)
    throughput: dict[int, float] = field(default_factory=dict)
    peak_mb: float = 0.0
    memory_kind: str = ""
    input: str = "model input"
    random_weights: bool = True
    backend: str = "torch"
    threads: int | None = None

    @property
    def best_batch(self) -> int:
        """The batch size with the highest throughput."""
        return max(self.throughput, key=self.throughput.__getitem__)

    def to_json(self) -> dict:
        return {**asdict(self), "best_batch": self.best_batch}


def parse_encoder_spec(spec: str) -> tuple[str, str | None]:
    """ "clip:ViT-B/32" -> ("clip", "ViT-B/32"); "default" -> ("default", None).

    Only the first colon separates: "clip:ViT-B-32:laion2b_s34b_b79k" keeps its tag.
    """
    kind, _, model = spec.strip().partition(":")
    return kind, (model or None)


def default_encoders(device: torch.device, everything: bool = False) -> tuple[str, ...]:
    """The encoders measured when none are named: all on a GPU, the smaller ones on a CPU."""
    return ALL_ENCODERS if everything or device.type == "cuda" else CPU_ENCODERS


def default_batches(device: torch.device) -> tuple[int, ...]:
    """Batch sizes measured when none are given."""
    return (1, 4, 16, 64, 256) if device.type == "cuda" else (1, 4, 16)


def bench_encoder(
    spec: str,
    *,
    device: str | torch.device | None = None,
    precision: str = "auto",
    batches: Sequence[int] = (1, 4, 16),
    seconds: float = 2.0,
    acceleration: Acceleration | None = None,
    frame_size: tuple[int, int] | None = None,
    backend: str = "torch",
    export_cache: str | None = None,
    calibration: str | None = None,
) -> EncoderRow:
    """Load one encoder with random weights and measure it.

    Args:
        spec: "kind:model" ("clip:ViT-B/32", "dinov2:small", "default").
        device, precision: as for `encoders.create_encoder`.
        batches: batch sizes to time.
        seconds: time spent per batch size (at least 3 runs each, after a warm-up run).
        acceleration: speed-ups (None: the streamer's default, CUDA graphs on CUDA).
        frame_size: (width, height) of uint8 frames to feed from the host; None feeds model
            input already on the device.
        backend: what runs the image tower ("torch", "openvino", "auto"; `encoders.backends`).
        export_cache: where a backend's export is kept (None: converted in memory, untimed).
        calibration: a video to calibrate int8 on: the image tower quantised (openvino or
            onnxruntime); None: not quantised.

    Returns:
        The measurements.
    """
    kind, model = parse_encoder_spec(spec)
    target = resolve_device(device)
    _import_library(kind)  # its import is not the encoder's memory

    def create() -> encoders.Encoder:
        return encoders.create_encoder(
            kind, model, weights="random", device=target, precision=precision,
            backend=backend, export_cache=export_cache, int8=calibration is not None,
            calibration=calibration,
        )  # fmt: skip

    if export_cache is not None and _exports(backend, kind, target, precision, calibration):
        # A first run exports with the torch model in memory; a user's later runs open the
        # export from the cache, and that is what the row measures.
        create()
        gc.collect()
    with PeakMemory(target) as memory:
        encoder = create()
        encoder.accelerate(acceleration or Acceleration())
        latency, throughput = _time_batches(encoder, batches, seconds, frame_size)
    row = _row(
        spec, encoder, latency, throughput, memory, frame_size, _size_mb(encoder, export_cache)
    )
    del encoder
    gc.collect()
    if target.type == "cuda":
        torch.cuda.empty_cache()
    return row


def _exports(
    backend: str, kind: str, device: torch.device, precision: str, calibration: str | None
) -> bool:
    """Whether `backend` runs the encoder from an export (not the torch model itself)."""
    from encoders.backends import EXPORTED, choose_backend

    chosen = choose_backend(backend, kind, device=str(device), precision=precision,
                            int8=calibration is not None)  # fmt: skip
    return chosen.name in EXPORTED


def _row(
    spec: str,
    encoder: encoders.Encoder,
    latency: dict[int, float],
    throughput: dict[int, float],
    memory: PeakMemory,
    frame_size: tuple[int, int] | None,
    size_mb: float | None,
) -> EncoderRow:
    info = encoder.info
    return EncoderRow(
        encoder=spec,
        device=info.device,
        dtype=info.dtype,
        speedups=info.speedups,
        params_m=info.num_params / 1e6,
        size_mb=size_mb,
        latency_ms=latency,
        throughput=throughput,
        peak_mb=memory.peak_mb,
        memory_kind=memory.kind,
        input="model input" if frame_size is None else "uint8 frames {}x{}".format(*frame_size),
        random_weights=info.random_weights,
        backend=info.backend,
        threads=torch.get_num_threads() if torch.device(info.device).type == "cpu" else None,
    )


def _size_mb(encoder: encoders.Encoder, export_cache: str | None) -> float | None:
    """What the row's encoder runs, in MB: torch's weights in memory; on another backend, the
    export's files on disk (None: converted in memory)."""
    if encoder.info.backend == "torch":
        module = encoder.module
        tensors = (*module.parameters(), *module.buffers())
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20
    key = getattr(encoder.runtime, "export_key", None)
    if key is None or export_cache is None:
        return None
    from encoders.backends.export_cache import ExportCache

    folder = ExportCache(export_cache).folder(key)
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def _import_library(kind: str) -> None:
    if kind == "clip":
        from encoders._openclip import load_open_clip

        load_open_clip()
    elif kind == "dinov2":
        from transformers import Dinov2Config, Dinov2Model  # noqa: F401


def _time_batches(
    encoder: encoders.Encoder,
    batches: Sequence[int],
    seconds: float,
    frame_size: tuple[int, int] | None,
) -> tuple[dict[int, float], dict[int, float]]:
    device = encoder.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    size = encoder.preprocess_cfg.size
    generator = torch.Generator().manual_seed(0)
    latency: dict[int, float] = {}
    throughput: dict[int, float] = {}
    for batch in batches:
        if frame_size is None:
            images = torch.randn(batch, 3, size, size, generator=generator)
            images = images.to(device=device, dtype=encoder.dtype)
        else:
            width, height = frame_size
            rng = np.random.default_rng(batch)
            images = [rng.integers(0, 256, (height, width, 3), np.uint8) for _ in range(batch)]
        timing = time_runs(lambda images=images: encoder.embed(images), seconds=seconds, sync=sync)
        latency[batch] = timing.median_ms
        throughput[batch] = batch / timing.median_s
        log.info("%s batch %d: %.2f ms, %.0f img/s", encoder.info.model, batch,
                 timing.median_ms, throughput[batch])  # fmt: skip
    return latency, throughput


def markdown_table(rows: Sequence[EncoderRow]) -> str:
    """The encoder table in markdown, with a line on how it was measured above it."""
    if not rows:
        return "(no encoders measured)"
    first = rows[0]
    device = torch.device(first.device)
    lines = [
        f"Machine: {machine_line(device)}.",
        f"Device {first.device}{_threads(device)}{_speedups(rows)}; "
        f"input: {first.input}; RANDOM weights (speed and memory do not depend on them); "
        f"peak memory: {first.memory_kind}{_size_note(rows)}.",
        "",
        "| encoder | backend, dtype | params (M) | size (MB) | latency b1 (ms) | latency b4 (ms) "
        "| best batch | throughput (img/s) | peak memory (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        best = row.best_batch
        lines.append(
            f"| {row.encoder} | {row.backend}, {row.dtype} | {row.params_m:.1f} | "
            f"{_mb(row.size_mb)} | {_ms(row.latency_ms.get(1))} | {_ms(row.latency_ms.get(4))} | "
            f"{best} | "
            f"{row.throughput[best]:.1f} | {row.peak_mb:.0f} |"
        )
    return "\n".join(lines)


def _speedups(rows: Sequence[EncoderRow]) -> str:
    """The torch speed-ups of the rows torch runs; nothing where none does (they do not
    apply to another backend)."""
    used = sorted({row.speedups for row in rows if row.backend == "torch"})
    return f", torch speed-ups: {' / '.join(used)}" if used else ""


def _size_note(rows: Sequence[EncoderRow]) -> str:
    if all(row.backend == "torch" for row in rows):
        return ""
    return "; size: torch's weights in memory, another backend's image-tower export on disk"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _threads(device: torch.device) -> str:
    if device.type != "cpu":
        return ""
    threads = torch.get_num_threads()
    return f" ({threads} thread{'' if threads == 1 else 's'})"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"
