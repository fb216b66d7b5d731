"""`streamer bench pipeline`: file and live throughput and latency against the floors, one run.

Every mode of `streamer.bench.file` runs on the same clip, each in its own process, one after
the other, and the report gives the ratios between them:

- file, at the default analysis rate and with every frame analysed: pipeline fps over the
  decode floor, over floor+draw, and over the naive loop;
- live (the clip paced at its frame rate like a camera, default analysis rate): delivered fps
  over the floor's, and latency (capture → written) of the pipeline, the floor and the naive
  loop. The naive loop cannot drop frames: when it is slower than the camera its latency grows
  through the run.

The pipeline loads its encoder as `streamer run` does (`PipelineBench.encoder`: the backend,
int8, precision and export cache); the naive loop runs torch in fp32, the loop a user writes
first. A backend that keeps an export has it made, and the labels embedded, once before the
timed rows (`streamer.bench.file.prepare`): each row starts as a later `streamer run` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streamer.bench.clips import looped_clip
from streamer.bench.file import ModeConfig, ModeResult, PipelineEncoder, prepare, spawn
from streamer.bench.measure import cpu_line
from streamer.errors import ConfigError

__all__ = ["PipelineBench", "PipelineReport", "run_pipeline_bench"]


@dataclass(frozen=True)
class PipelineBench:
    """What to run.

    Attributes:
        clip: the input (looped whole to at least `seconds`).
        seconds: shortest length of the benchmark clip.
        loops: repeat the input exactly this many times instead; None: from `seconds`.
        model: CLIP model (random weights) for the naive loop and the pipeline.
        device: "cpu", "cuda", ...; None: CUDA when available, as `streamer run` (decided in
            the child processes: this one never imports torch, whose memory a child started
            from it would count in its peak).
        encoder: how the pipeline loads its encoder (the command line: as `streamer run`,
            with the export cache); the naive loop runs torch in fp32.
        preset: x264 preset of the written videos.
        analyze_fps: the default analysis rate; None: every frame.
        every_frame: also the file rows with every frame analysed.
        live: also the live rows.
    """

    clip: Path
    seconds: float = 20.0
    loops: int | None = None
    model: str = "ViT-B/32"
    device: str | None = "cpu"
    encoder: PipelineEncoder = field(default_factory=PipelineEncoder)
    preset: str = "veryfast"
    analyze_fps: float | None = 2.0
    every_frame: bool = True
    live: bool = True

    def rates(self) -> list[float | None]:
        """The analysis rates of the file rows: the default, then every frame if asked."""
        extra = self.every_frame and self.analyze_fps is not None
        return [self.analyze_fps] + ([None] if extra else [])

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ConfigError(f"seconds must be > 0, got {self.seconds} (--seconds)")
        if self.loops is not None and self.loops < 1:
            raise ConfigError(f"loops must be ≥ 1, got {self.loops}")
        if self.analyze_fps is not None and not self.analyze_fps > 0:
            raise ConfigError(f"analyze_fps must be > 0 (or None: every frame), got "
                             f"{self.analyze_fps} (--analyze-fps)")  # fmt: skip
        self.encoder.choice(self.model, self.device)  # refused now, not after the floors


@dataclass(frozen=True)
class PipelineReport:
    """Results by row name ("file floor", "file pipeline @2 fps", "live naive @2 fps", ...)."""

    bench: PipelineBench
    loops: int
    results: dict[str, ModeResult]

    def ratios(self) -> dict[str, float]:
        """The comparisons, by name ("file @2 fps: pipeline/floor", ...)."""
        r = self.results
        out: dict[str, float] = {}
        for rate in self._rates():
            pipe, naive = r[f"file pipeline @{rate}"].fps, r[f"file naive @{rate}"].fps
            out[f"file @{rate}: pipeline/floor"] = pipe / r["file floor"].fps
            out[f"file @{rate}: pipeline/(floor+draw)"] = pipe / r["file floor+draw"].fps
            out[f"file @{rate}: pipeline/naive"] = pipe / naive
        if self.bench.live:
            rate = self._rates()[0]
            pipe, floor = r[f"live pipeline @{rate}"], r["live floor"]
            naive = r[f"live naive @{rate}"]
            out["live: delivered fps pipeline/floor"] = pipe.fps / floor.fps
            out["live: latency p50 naive/pipeline"] = _ratio(naive, pipe, 0)
            out["live: latency p99 naive/pipeline"] = _ratio(naive, pipe, 2)
        return out

    def to_json(self) -> dict:
        return {
            "bench": {**asdict(self.bench), "clip": str(self.bench.clip)},
            "loops": self.loops,
            "results": {name: asdict(result) for name, result in self.results.items()},
            "ratios": self.ratios(),
        }

    def markdown(self) -> str:
        b = self.bench
        lines = [
            f"Machine: {cpu_line()}; clip {b.clip.name} "
            f"x{self.loops}{'' if b.loops else f' (≥ {b.seconds:g} s)'}; CLIP {b.model} "
            f"(random weights){self._encoders()}; x264 {b.preset}.",
            "",
            "| mode | frames | analysed | dropped | frames/s | latency p50 / p95 / p99 (ms) "
            "| peak RSS (MB) |",
            "|---|---:|---:|---:|---:|---|---:|",
        ]
        for name, r in self.results.items():
            latency = "–" if r.latency_ms is None else " / ".join(f"{v:.0f}" for v in r.latency_ms)
            lines.append(f"| {name} | {r.frames} | {r.analysed} | {r.dropped} | {r.fps:.1f} "
                         f"| {latency} | {r.peak_rss_mb:.0f} |")  # fmt: skip
        lines += ["", "| ratio | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in self.ratios().items()]
        return "\n".join(lines)

    def _rates(self) -> list[str]:
        return [_rate(fps) for fps in self.bench.rates()]

    def _encoders(self) -> str:
        """What ran the encoder of the pipeline and of the naive loop, from their rows:
        ": pipeline openvino, float32 on cpu (--backend auto), naive loop torch, float32 on
        cpu"."""
        parts = []
        for mode, name in (("pipeline", "pipeline"), ("naive", "naive loop")):
            ran = sorted({r.encoder for r in self.results.values() if r.mode == mode and r.encoder})
            if ran:
                asked = f" (--backend {self.bench.encoder.backend})" if mode == "pipeline" else ""
                parts.append(f"{name} {' / '.join(ran)}{asked}")
        return ": " + ", ".join(parts) if parts else ""


def _rate(fps: float | None) -> str:
    return "every frame" if fps is None else f"{fps:g} fps"


def _ratio(slow: ModeResult, fast: ModeResult, index: int) -> float:
    if not slow.latency_ms or not fast.latency_ms or fast.latency_ms[index] <= 0:
        return float("nan")
    return slow.latency_ms[index] / fast.latency_ms[index]


def run_pipeline_bench(
    bench: PipelineBench, folder: Path, progress: Callable[[str], None] = lambda _: None
) -> PipelineReport:
    """Run every mode, one process each, in `folder` (clip, outputs, text cache).

    Args:
        bench: what to run.
        folder: a scratch folder (the looped clip and every mode's video go there).
        progress: told the name of each mode as it starts (and of the set-up, when the
            pipeline's backend keeps an export).

    Returns:
        The report.
    """
    clip, loops = looped_clip(bench.clip, bench.seconds, folder / "clip.mp4", bench.loops)
    plan: list[tuple[str, str, float | None, bool]] = [
        ("file floor", "floor", None, False),
        ("file floor+draw", "floor+draw", None, False),
    ]
    for fps in bench.rates():
        plan += [(f"file naive @{_rate(fps)}", "naive", fps, False),
                 (f"file pipeline @{_rate(fps)}", "pipeline", fps, False)]  # fmt: skip
    if bench.live:
        rate = _rate(bench.analyze_fps)
        plan += [("live floor", "floor", None, True),
                 (f"live naive @{rate}", "naive", bench.analyze_fps, True),
                 (f"live pipeline @{rate}", "pipeline", bench.analyze_fps, True)]  # fmt: skip

    def config(index: int, mode: str, fps: float | None, live: bool) -> ModeConfig:
        return ModeConfig(mode=mode, clip=str(clip), out=str(folder / f"out{index}.mp4"),
                          model=bench.model, device=bench.device, encoder=bench.encoder,
                          preset=bench.preset, analyze_fps=fps, live=live,
                          text_cache=str(folder / "text"))  # fmt: skip

    if bench.encoder.backend != "torch" and bench.encoder.export_cache is not None:
        progress("pipeline set-up (its export made once, the labels embedded)")
        prepare(config(len(plan), "pipeline", None, False))
    results: dict[str, ModeResult] = {}
    for index, (name, mode, fps, live) in enumerate(plan):
        progress(name)
        results[name] = spawn(config(index, mode, fps, live))
    return PipelineReport(bench, loops, results)
