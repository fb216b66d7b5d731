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

On a lent GPU:      bench/gpu.sh [OUT]          (installs the carried wheels, then this)
Here, on the CPU:   python bench/gpu_suite.py --device cpu --quick --out /tmp/gpu

Random weights throughout: speed does not depend on them. A partial result is written after
every section, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
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

from encoders import create_encoder  # noqa: E402
from encoders.acceleration import Acceleration  # noqa: E402
from encoders.preprocess import preprocess_frames  # noqa: E402
from streamer.bench.clips import looped_clip  # noqa: E402
from streamer.bench.encoders import parse_encoder_spec  # noqa: E402
from streamer.bench.file import ModeConfig, spawn  # noqa: E402
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
SECTIONS = ("encoders", "upload", "preprocess", "oom", "decode", "pipeline")
TARGET_MODEL = "clip:ViT-B/32"
# A quick run's vocabulary: the default one's ~100 text embeddings take seconds on a CPU.
QUICK_LABELS = ("a person", "a rabbit", "a tree", "a meadow", "the sky", "a bird")


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
    )


def _choices(text: str, valid: tuple[str, ...], flag: str) -> tuple[str, ...]:
    chosen = tuple(text.split(","))
    unknown = [c for c in chosen if c not in valid]
    if unknown:
        wrong, known = ", ".join(unknown), ", ".join(valid)
        raise SystemExit(f"gpu_suite: {flag}: unknown {wrong}; valid: {known}")
    return chosen


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
        clip = str(looped_clip(plan.clip, 0, folder / "clip.mp4", plan.loops, plan.trim)[0])
        steps: list[tuple[str, Callable[[], dict]]] = [
            ("encoders", lambda: section_encoders(plan)),
            ("upload", lambda: section_upload(plan)),
            ("preprocess", lambda: _then_free(plan, section_preprocess(plan))),
            ("oom", lambda: section_oom(plan)),
            ("decode", lambda: section_decode(plan, clip)),
            ("pipeline", lambda: section_pipeline(plan, clip, folder)),
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
    return "\n".join(lines)


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
    sys.exit(main())
