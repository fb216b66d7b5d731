"""File annotation against its floors and a naive loop, each mode in its own process.

Modes, all on the same clip, each timing its frame loop only (loading the model and embedding
the label vocabulary are set-up in every mode):

  floor        decode (PyAV, threaded) + H.264 encode, no analysis, no drawing
  floor+draw   decode + overlay drawing + H.264 encode, no analysis
  naive        one thread, frame by frame: decode; for sampled frames open_clip's own PIL
               preprocess + encode one image; draw; H.264 encode
  pipeline     `streamer`'s pipeline (threaded decode, batched on-device preprocessing,
               encoder thread, writer thread), its encoder loaded as `streamer run` loads it
               (`PipelineEncoder`: the backend, int8, precision and export cache it is given)

The naive loop stays torch in fp32 whatever the pipeline runs on: it is the loop a user writes
first, the baseline the pipeline is measured against.

With `live=True` each mode reads the clip paced at its frame rate, like a camera: a frame is
"captured" at its scheduled time whether or not the loop is ready for it, and its latency is
the time from then until it is written. The floor and the naive loop cannot drop frames, so a
loop slower than the camera falls further behind; the pipeline keeps the newest frames.

Each mode runs in a child process (`python -m streamer.bench.file CONFIG-JSON`) so that its
peak memory is its own; the child prints one JSON line. `prepare` runs what a first
`streamer run` does once (`--prepare CONFIG-JSON`: the export made, the labels embedded), so
that each timed pipeline row starts as a later run does.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from streamer.bench.measure import child_env, percentiles
from streamer.errors import BenchError, ConfigError

if TYPE_CHECKING:
    from streamer.analysis.worker import EncoderChoice

__all__ = ["MODES", "ModeConfig", "ModeResult", "PipelineEncoder", "prepare", "run_mode", "spawn"]

MODES = ("floor", "floor+draw", "naive", "pipeline")


@dataclass(frozen=True)
class PipelineEncoder:
    """How the pipeline mode loads its encoder: as `streamer run` does, through an
    `EncoderChoice` with these fields (`streamer.analysis.worker`).

    Attributes:
        backend: "auto", "torch", "openvino" or "onnxruntime" ("auto" without an
            `export_cache` is torch, as `EncoderChoice` says).
        precision: "auto", "fp32", "fp16" or "bf16".
        int8: the image tower quantised to int8, calibrated on `calibrate`.
        calibrate: the video int8 calibrates on; None: the sample clip.
        export_cache: where the exports are kept (the command line's:
            `streamer.core.samples.export_cache_dir()`); None: none kept.
    """

    backend: str = "auto"
    precision: str = "auto"
    int8: bool = False
    calibrate: str | None = None
    export_cache: str | None = None

    def choice(self, model: str, device: str | None) -> EncoderChoice:
        """The choice of CLIP `model` on `device` with random weights; a combination no
        backend runs is a ConfigError naming the fix."""
        from streamer.analysis.worker import EncoderChoice

        return EncoderChoice(kind="clip", model=model, weights="random", device=device,
                             **asdict(self))  # fmt: skip


@dataclass(frozen=True)
class ModeConfig:
    """One mode's run.

    Attributes:
        mode: one of `MODES`.
        clip: the input file.
        out: the annotated video written.
        model: CLIP model for the naive loop and the pipeline (random weights).
        device: "cpu", "cuda", ...; None: CUDA when available.
        encoder: how the pipeline loads its encoder (the naive loop: torch, fp32).
        preset: x264 preset of the written video.
        analyze_fps: analysed frames per second; None: every frame.
        live: read the clip paced at its frame rate, like a camera.
        text_cache: folder for the label text embeddings (filled before the timed part).
        hwaccel: the pipeline's `--hwaccel` ("none", "cuda", "auto").
        labels: the zero-shot vocabulary; None: the shipped default (about a hundred labels,
            whose text embeddings take seconds to compute on a CPU: quick checks pass a few).
    """

    mode: str
    clip: str
    out: str
    model: str = "ViT-B/32"
    device: str | None = "cpu"
    encoder: PipelineEncoder = field(default_factory=PipelineEncoder)
    preset: str = "veryfast"
    analyze_fps: float | None = 2.0
    live: bool = False
    text_cache: str | None = None
    hwaccel: str = "none"
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.labels is not None:  # a list after a JSON round trip
            object.__setattr__(self, "labels", tuple(self.labels))
        if isinstance(self.encoder, dict):  # a dict, likewise
            object.__setattr__(self, "encoder", PipelineEncoder(**self.encoder))


@dataclass(frozen=True)
class ModeResult:
    """What one mode measured.

    Attributes:
        mode, live: as configured.
        frames: frames written; analysed: frames the encoder saw; dropped: frames skipped to
            stay live (the pipeline's live contract only).
        wall_s: seconds of the frame loop; fps: frames written per second.
        latency_ms: live runs: (p50, p95, p99) from capture to written; None for files.
        peak_rss_mb: the child process's peak resident memory.
        encoder: what ran the image encoder, "backend, dtype on device" ("openvino, float32 on
            cpu"); None for the floors.
    """

    mode: str
    live: bool
    frames: int
    analysed: int
    dropped: int
    wall_s: float
    fps: float
    latency_ms: tuple[float, float, float] | None
    peak_rss_mb: float
    encoder: str | None = None


def _writer(clip: str, out: str, preset: str):
    from streamer.outputs import VideoWriter
    from streamer.sources import probe_video

    info = probe_video(clip)
    return VideoWriter(
        out,
        width=info.width,
        height=info.height,
        time_base=info.time_base,
        rate=info.fps,
        audio_from=None,
        preset=preset,
    )


def _frames(clip: str, live: bool) -> Iterator[tuple[int, float, object, float]]:
    """(pts, seconds, RGB image, capture time) per frame; paced at the frame rate if `live`."""
    import av

    from streamer.sources.file import to_rgb

    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start, first = time.monotonic(), None
        for frame in container.decode(stream):
            seconds = float(frame.time)
            first = seconds if first is None else first
            due = start + (seconds - first)
            if live and due > time.monotonic():
                time.sleep(due - time.monotonic())
            # The pipeline's own conversion (a reused swscale context): the floor must not be
            # slower than the pipeline at something they both do.
            image = to_rgb(frame)
            yield frame.pts, seconds, image, due if live else time.monotonic()


class _Loop:
    """Counts, latencies and the writer of a floor or naive loop."""

    def __init__(self, config: ModeConfig) -> None:
        self.config = config
        self.latencies: list[float] = []
        self.frames = 0
        self.analysed = 0
        self.encoder: str | None = None
        self.started = time.perf_counter()
        self.writer = _writer(config.clip, config.out, config.preset)

    def write(self, image, pts: int, captured: float) -> None:
        self.writer.write(image, pts)
        self.latencies.append((time.monotonic() - captured) * 1000.0)
        self.frames += 1

    def result(self) -> ModeResult:
        self.writer.close()
        wall = time.perf_counter() - self.started
        live = self.config.live
        return ModeResult(self.config.mode, live, self.frames, self.analysed, 0, wall,
                          self.frames / wall, percentiles(self.latencies) if live else None,
                          _peak_rss_mb(), self.encoder)  # fmt: skip


def _hud(t: float, n: int):
    from streamer.outputs.overlay import Hud

    return Hud(lines=(f"{t:7.2f} s frame {n}", "bench"), warning=None, status=None)


def mode_floor(config: ModeConfig, draw: bool) -> ModeResult:
    from streamer.core.frame import Annotation, Caption, Tag
    from streamer.outputs.overlay import Overlay, OverlayStyle

    overlay = Overlay(OverlayStyle())
    annotation = Annotation("bench", 0, 0.0, (Tag("a label", 0.5), Tag("another", 0.3)), 0.0)
    caption = Caption("bench", 0, 0.0, "Looks like: a label, another, a third one", "tags")
    loop = _Loop(config)
    for pts, t, image, captured in _frames(config.clip, config.live):
        if draw:
            image = overlay.draw(image, annotation=annotation, caption=caption, now_pts=t,
                                 hud=_hud(t, loop.frames))  # fmt: skip
        loop.write(image, pts, captured)
    return loop.result()


def mode_naive(config: ModeConfig) -> ModeResult:
    import asyncio

    import numpy as np
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from encoders import create_encoder
    from streamer.analysis.labels import default_labels, prompts
    from streamer.analysis.text_cache import cached_text_embeddings
    from streamer.core.frame import Annotation, Caption, Tag
    from streamer.core.sampler import Sampler
    from streamer.outputs.overlay import Overlay, OverlayStyle

    encoder = create_encoder(
        "clip", config.model, weights="random", device=config.device, precision="fp32"
    )
    model = encoder.module
    preprocess = image_transform_v2(
        PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False
    )
    labels = config.labels or default_labels()

    async def embed(texts):
        return encoder.embed_text(texts).cpu().numpy()

    # Set-up, as in the pipeline (the same label cache when one is given).
    text = asyncio.run(
        cached_text_embeddings(config.text_cache, encoder.info, prompts(labels), embed)
    )
    overlay, sampler = Overlay(OverlayStyle()), Sampler(config.analyze_fps)
    annotation = caption = None
    loop = _Loop(config)
    loop.encoder = _ran(encoder)
    for pts, t, image, captured in _frames(config.clip, config.live):
        if sampler.take("bench", t):
            pixels = preprocess(Image.fromarray(image)).unsqueeze(0).to(encoder.device)
            with torch.inference_mode():
                emb = model.encode_image(pixels)[0].float().cpu()
            emb = (emb / emb.norm()).numpy()
            logits = 100 * (text @ emb)
            probs = np.exp(logits - logits.max())
            best = np.argsort(-probs)[:3]
            tags = tuple(Tag(labels[i], float(probs[i] / probs.sum())) for i in best)
            annotation = Annotation("bench", loop.frames, t, tags, 0.0)
            text_line = "Looks like: " + ", ".join(x.label for x in tags)
            caption = Caption("bench", loop.frames, t, text_line, "tags")
            loop.analysed += 1
        drawn = overlay.draw(image, annotation=annotation, caption=caption, now_pts=t,
                             hud=_hud(t, loop.frames))  # fmt: skip
        loop.write(drawn, pts, captured)
    return loop.result()


def mode_pipeline(config: ModeConfig) -> ModeResult:
    import asyncio

    from streamer import AnalysisConfig, OutputConfig, RunConfig, run_pipeline

    encoder = _loaded(config)
    extra = {}
    if config.hwaccel != "none":
        from streamer.sources import SourceOptions

        extra["sources"] = SourceOptions(hwaccel=config.hwaccel)
    run = RunConfig(
        input=config.clip,
        outputs=OutputConfig(video=config.out, preset=config.preset, copy_audio=False),
        analysis=AnalysisConfig(
            analyze_fps=config.analyze_fps, text_cache=config.text_cache, labels=config.labels
        ),
        live=True if config.live else None,
        **extra,
    )
    started = time.perf_counter()
    summary = asyncio.run(run_pipeline(run, encoder=encoder))
    wall = time.perf_counter() - started
    stream = summary.streams[0] if summary.streams else None
    return ModeResult(
        mode=config.mode,
        live=config.live,
        frames=summary.frames,
        analysed=summary.analysed,
        dropped=stream.dropped if stream else 0,
        wall_s=wall,
        fps=summary.frames / wall,
        latency_ms=tuple(stream.latency_ms) if (stream and config.live) else None,
        peak_rss_mb=_peak_rss_mb(),
        encoder=_ran(encoder),
    )


def _loaded(config: ModeConfig):
    """The pipeline's encoder, loaded as `streamer run` loads it (`load_encoder`), with the
    label embeddings in `config.text_cache`: set-up outside the timed part, as for the naive
    loop."""
    import asyncio

    from streamer.analysis.labels import default_labels, prompts
    from streamer.analysis.text_cache import cached_text_embeddings
    from streamer.analysis.worker import load_encoder

    encoder = load_encoder(config.encoder.choice(config.model, config.device))

    async def embed(texts):
        return encoder.embed_text_array(texts)

    texts = prompts(config.labels or default_labels())
    asyncio.run(cached_text_embeddings(config.text_cache, encoder.info, texts, embed))
    return encoder


def _ran(encoder) -> str:
    """What runs the image encoder: "backend, dtype on device"."""
    info = encoder.info
    return f"{info.backend}, {info.dtype} on {info.device}"


def run_mode(config: ModeConfig) -> ModeResult:
    """Run one mode in this process (the floors never import torch)."""
    if config.mode in ("floor", "floor+draw"):
        return mode_floor(config, draw=config.mode == "floor+draw")
    _set_threads()
    if config.mode == "naive":
        return mode_naive(config)
    return mode_pipeline(config)


def spawn(config: ModeConfig, timeout: float | None = None) -> ModeResult:
    """Run one mode in a child process and return what it measured.

    Raises:
        BenchError: the child failed; the message ends with its stderr.
    """
    fields = _child([json.dumps(asdict(config))], config.mode, timeout)
    if fields["latency_ms"] is not None:
        fields["latency_ms"] = tuple(fields["latency_ms"])
    return ModeResult(**fields)


def prepare(config: ModeConfig, timeout: float | None = None) -> str:
    """Do once, in a child process, what a first `streamer run` does: load the pipeline's
    encoder (exported, and quantised with int8, into its export cache) and embed the labels
    into `config.text_cache`. The timed pipeline rows then start as a later run does, and the
    export's cost is in none of their times or peak memories.

    Returns:
        What runs the pipeline's image encoder, "backend, dtype on device".

    Raises:
        BenchError: the child failed; the message ends with its stderr.
    """
    return _child(["--prepare", json.dumps(asdict(config))], "prepare", timeout)["encoder"]


def _child(args: list[str], name: str, timeout: float | None) -> dict:
    """Run `python -m streamer.bench.file ARGS`; its last line of output, as JSON."""
    command = [sys.executable, "-m", "streamer.bench.file", *args]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=child_env(), timeout=timeout
    )
    if done.returncode != 0:
        raise BenchError(f"benchmark mode {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _set_threads() -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    """Child entry point: one ModeConfig as JSON in, one ModeResult as JSON out; with
    `--prepare` first, `prepare`'s work, and what runs the encoder out."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = argv or sys.argv[1:]
    config = ModeConfig(**json.loads(args[-1]))
    if args[0] == "--prepare":
        _set_threads()
        print(json.dumps({"encoder": _ran(_loaded(config))}))
        return
    print(json.dumps(asdict(run_mode(config))))


if __name__ == "__main__":
    main()
