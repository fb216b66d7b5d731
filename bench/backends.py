"""torch, OpenVINO and ONNX Runtime, fp32 and int8, on this CPU: one encoder, side by side.

One process builds the encoder on every backend and variant: torch (fp32, eager), OpenVINO and
ONNX Runtime in fp32 (exported once into a fresh cache folder) and in int8 (NNCF post-training
quantisation, calibrated on `--calibration-frames` frames of the sample clip, kept beside the
fp32 export), and OpenVINO in bf16 on a CPU with bf16 arithmetic (AVX-512 BF16 or AMX). It
checks each against torch on real frames of another clip (pooled-embedding cosine, lowest and
mean), then times them all, rotating the order each round so a drift of the machine's load
spreads over all of them. Two inputs per batch size:

  model input   normalised Bx3xSxS float32 already in memory: the encoder alone
  frames        uint8 frames at the encoder's resize size (as the pipeline hands them over:
                the source scales them while decoding), so crop and normalisation are in

and each thread count of `--threads` (every backend is rebuilt with it: OpenVINO and ONNX
Runtime take torch's thread count when they compile). Prints the median milliseconds per batch
(the mean of the rounds' medians), images per second, images per second per thread (to size a
CPU box: a core gives about that many), and the time as a fraction of torch's; the same for the
fastest batch of all rounds (on a machine shared with other work, the least disturbed one);
then what each build took (the first exports and quantises; the later ones load the cache).
Random weights: speed does not depend on them.

The arithmetic ceiling: each row's fastest batch is also given in GFLOP/s (torch's FLOP count
of the model) and as a share of the best GFLOP/s torch's own fp32 matrix product reaches on
this CPU with the same threads (square products of 512 to 2048). A backend cannot run the fp32
model much faster than that ceiling, so the lines after the table say what share of it a time
of 0.5× or 0.3× torch's would need: above 100 %, fp32 cannot get there on this CPU. int8 has
a ceiling of its own, measured the same way on ONNX Runtime's int8 matrix product
(`MatMulInteger`, the kernel its quantised models use): the lines say what time the whole model
would take with every operation at that ceiling, a bound no int8 backend here can beat, and
where ONNX Runtime int8's time goes (its own profiler, one batch: the int8 products against
everything else).

Run:  python bench/backends.py [--model ViT-B/32] [--batches 8] [--threads 1,2] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import encoders  # noqa: E402
from bench._entry import run_script  # noqa: E402
from streamer.bench.measure import machine_line, time_runs  # noqa: E402

#: label → (backend, int8, precision); "openvino bf16" only on a CPU with bf16 arithmetic
VARIANTS = {
    "torch": ("torch", False, "fp32"),
    "openvino": ("openvino", False, "fp32"),
    "onnxruntime": ("onnxruntime", False, "fp32"),
    "openvino int8": ("openvino", True, "fp32"),
    "onnxruntime int8": ("onnxruntime", True, "fp32"),
    "openvino bf16": ("openvino", False, "bf16"),
}


def frames_at_resize_size(
    path: Path, cfg: encoders.PreprocessConfig, count: int
) -> list[np.ndarray]:
    """`count` real frames of `path`, spread over it, scaled to the encoder's resize size."""
    import av
    import PIL.Image

    from encoders.preprocess import resized_shape

    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    step = max(1, len(decoded) // count)
    out = []
    for frame in decoded[::step][:count]:
        height, width = resized_shape(frame.shape[0], frame.shape[1], cfg)
        image = PIL.Image.fromarray(frame).resize((width, height), PIL.Image.Resampling.BICUBIC)
        out.append(np.asarray(image))
    return out


def _build(args: argparse.Namespace, cache: Path, calibration) -> tuple[dict, dict]:
    """Every variant, built with torch's thread count now, and what each build took (s)."""
    from encoders.backends.openvino_backend import cpu_has_bf16

    built, seconds = {}, {}
    for label, (backend, int8, precision) in VARIANTS.items():
        if precision == "bf16" and not cpu_has_bf16():
            continue  # refused there (OpenVINO would compute in fp32)
        started = time.perf_counter()
        built[label] = encoders.create_encoder(
            "clip", args.model, weights="random", device="cpu", precision=precision,
            backend=backend, export_cache=cache, int8=int8,
            calibration=calibration if int8 else None,
        )  # fmt: skip
        seconds[label] = time.perf_counter() - started
    return built, seconds


def _agreement(built: dict, frames: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """(lowest, mean) pooled-embedding cosine of each variant against torch on `frames`."""
    reference = built["torch"].embed(frames).numpy()
    out = {}
    for label, encoder in built.items():
        cosines = (encoder.embed(frames).numpy() * reference).sum(axis=1)
        out[label] = (float(cosines.min()), float(cosines.mean()))
    return out


def _inputs(encoder: encoders.Encoder, frames: list[np.ndarray], batch: int) -> dict:
    import torch

    from encoders.backends.frames import frames_to_pixels

    chosen = np.stack([frames[i % len(frames)] for i in range(batch)])
    pixels = torch.from_numpy(frames_to_pixels(chosen, encoder.preprocess_cfg))  # all take it
    return {"model input": pixels, "frames": chosen}


def _measure(built: dict, frames: list[np.ndarray], threads: int, args, medians: dict) -> None:
    """Add {(input, batch, threads, label): [(median, fastest) per round]} to `medians`."""
    labels = list(built)
    for round_number in range(args.rounds):
        shift = round_number % len(labels)
        order = labels[shift:] + labels[:shift]  # each variant leads one round in turn
        for batch in args.batches:
            for name, images in _inputs(built["torch"], frames, batch).items():
                for label in order:
                    encoder = built[label]
                    timing = time_runs(lambda e=encoder, i=images: e.embed(i),
                                       seconds=args.seconds)  # fmt: skip
                    medians.setdefault((name, batch, threads, label), []).append(
                        (timing.median_s, min(timing.runs))
                    )
                    print(f"{threads} thread(s), round {round_number + 1} {name} b{batch} "
                          f"{label}: {timing.median_ms:.1f} ms", file=sys.stderr)  # fmt: skip


def flops_per_image(encoder: encoders.Encoder, frames: list[np.ndarray]) -> tuple[float, float]:
    """Floating-point operations of one image through the torch encoder, as torch's counter
    counts them (matrix products and convolutions, 2 per multiply-add): all of them, and those
    of the linear layers' products alone (`mm`, `addmm`, `bmm`: what int8 quantises).

    Counted with `nn.MultiheadAttention`'s fused inference kernel off: the counter does not see
    inside it, and would miss the attention's projections (a third of ViT-B/32's work). The
    attention's own score products (scaled dot-product attention) are not counted: about 1 % of
    ViT-B/32's work at 50 tokens."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    fused = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            encoder.embed(_inputs(encoder, frames, 2)["model input"])
    finally:
        torch.backends.mha.set_fastpath_enabled(fused)
    linear = sum(n for op, n in counter.get_flop_counts()["Global"].items()
                 if str(op) in ("aten.mm", "aten.addmm", "aten.bmm"))  # fmt: skip
    return counter.get_total_flops() / 2, linear / 2


def matmul_ceiling(seconds: float) -> float:
    """The most GFLOP/s torch's fp32 matrix product reaches here with the current thread
    count: the best single product of square sizes 512, 1024 and 2048 (the BLAS at its best;
    a whole model, with its softmax, norms and copies, stays below it)."""
    import torch

    best = 0.0
    for size in (512, 1024, 2048):
        a, b = torch.randn(size, size), torch.randn(size, size)
        timing = time_runs(lambda a=a, b=b: torch.mm(a, b), seconds=seconds)
        best = max(best, 2 * size**3 / min(timing.runs) / 1e9)
    return best


def _ort_options():
    """ONNX Runtime session options as the backend's sessions have them: torch's thread count,
    one batch at a time."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return options


def int8_matmul_ceiling(seconds: float) -> float:
    """The most GOP/s (2 per multiply-add) ONNX Runtime's int8 matrix product reaches here
    with torch's thread count: `MatMulInteger`, uint8 × int8 → int32, the kernel its quantised
    models run on, best of square sizes 512, 1024 and 2048. A quantised model cannot run its
    matrix products faster than this, whatever else it does."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    options = _ort_options()
    best = 0.0
    rng = np.random.default_rng(0)
    for size in (512, 1024, 2048):
        weights = rng.integers(-127, 128, (size, size), dtype=np.int8)
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "int8 matmul",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
            [onnx.numpy_helper.from_array(weights, "w")],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8  # what every ONNX Runtime of the last years reads
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])  # fmt: skip
        feed = {"a": rng.integers(0, 256, (size, size), dtype=np.uint8)}
        timing = time_runs(lambda s=session, f=feed: s.run(None, f), seconds=seconds)
        best = max(best, 2 * size**3 / min(timing.runs) / 1e9)
    return best


#: ONNX Runtime's int8 matrix products (its CPU graph passes fuse NNCF's quantize/dequantize
#: pairs around a MatMul or Gemm into these)
INT8_PRODUCTS = frozenset(
    {"MatMulIntegerToFloat", "MatMulInteger", "QGemm", "QLinearMatMul", "QLinearConv",
     "ConvInteger", "DynamicQuantizeMatMul"}
)  # fmt: skip


def onnxruntime_time_shares(model: Path, pixels: np.ndarray, runs: int = 5) -> dict[str, float]:
    """Milliseconds per run of each operator type of the ONNX model at `model` on `pixels`,
    from ONNX Runtime's own profiler (a session of its own, torch's thread count), most first."""
    import onnxruntime as ort

    options = _ort_options()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="streamer-profile-") as folder:
        options.profile_file_prefix = str(Path(folder) / "run")
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: pixels}
        for _ in range(runs + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    first = min((e for e in events if e["name"] == "model_run"), key=lambda e: e["ts"])
    warm = first["ts"] + first["dur"]  # the first run chooses kernels: left out
    totals: dict[str, float] = {}
    for event in events:
        node = event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
        if node and event["ts"] >= warm:
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1e3 / runs
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _table(medians: dict, flops: float, ceilings: dict[int, float]) -> list[str]:
    lines = [
        "| input | batch | threads | backend | ms per batch | img/s | img/s per thread "
        "| ÷ torch | fastest batch (ms) | ÷ torch | GFLOP/s | of the ceiling |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, batch, threads, label), values in medians.items():
        seconds = statistics.mean(v[0] for v in values)
        fastest = min(v[1] for v in values)
        reference = medians[(name, batch, threads, "torch")]
        torch_seconds = statistics.mean(v[0] for v in reference)
        torch_fastest = min(v[1] for v in reference)
        gflops = batch * flops / fastest / 1e9  # int8: the fp32 model's count, for comparison
        lines.append(
            f"| {name} | {batch} | {threads} | {label} | {seconds * 1e3:.1f} | "
            f"{batch / seconds:.1f} | {batch / seconds / threads:.1f} | "
            f"{seconds / torch_seconds:.3f}× | {fastest * 1e3:.1f} | "
            f"{fastest / torch_fastest:.3f}× | {gflops:.1f} | {gflops / ceilings[threads]:.0%} |"
        )
    return lines


def _ceiling_lines(medians: dict, flops: float, ceilings: dict[int, tuple[float, float]]
                   ) -> list[str]:  # fmt: skip
    """What the targets ask of the arithmetic: 0.5× and 0.3× torch's fastest batch, as a
    share of the measured fp32 matmul ceiling, and the least time the int8 ceiling allows."""
    lines = [f"\n{flops / 1e9:.2f} GFLOP per image (torch's counter)."]
    for (name, batch, threads, label), values in medians.items():
        if label != "torch" or name != "model input":
            continue
        torch_fastest = min(v[1] for v in values)
        torch_rate = batch * flops / torch_fastest / 1e9
        fp32, int8 = ceilings[threads]
        lines.append(
            f"{threads} thread(s), batch {batch}: matmul ceiling {fp32:.1f} GFLOP/s; torch "
            f"reaches {torch_rate:.1f} ({torch_rate / fp32:.0%}); 0.5× its time needs "
            f"{2 * torch_rate / fp32:.0%} of the ceiling, 0.3× needs "
            f"{torch_rate / 0.3 / fp32:.0%}. int8 matmul ceiling {int8:.1f} GOP/s "
            f"({int8 / fp32:.0%} of fp32): every operation of the model at it would take "
            f"{batch * flops / int8 / 1e9 / torch_fastest:.2f}× torch's time"
        )
    return lines


def _profile_lines(shares: dict[str, float], linear_ops: float, int8_ceiling: float,
                   threads: int) -> list[str]:  # fmt: skip
    """Where ONNX Runtime int8's time goes: its int8 products (`linear_ops` operations a
    batch: the linear layers' work) against the rest."""
    products = sum(ms for op, ms in shares.items() if op in INT8_PRODUCTS)
    total = sum(shares.values())
    rate = linear_ops / products / 1e6
    top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(shares.items())[:6])
    return [
        f"ONNX Runtime int8, {threads} thread(s), one batch: {total:.1f} ms in operators; "
        f"int8 matrix products {products:.1f} ms ({products / total:.0%}: {rate:.1f} GOP/s, "
        f"{rate / int8_ceiling:.0%} of the int8 ceiling), the rest {total - products:.1f} ms. "
        f"Most (ms): {top}."
    ]


def _clips() -> tuple[Path, Path]:
    """The calibration clip (the sample clip) and a held-out one to check agreement on."""
    from streamer.core.samples import sample_clip

    return sample_clip(), sample_clip(name="bikes.mp4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B/32", help="CLIP model (random weights)")
    parser.add_argument("--batches", default="8", help="batch sizes, comma-separated")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, order rotated")
    parser.add_argument("--calibration-frames", type=int, default=128, help="int8 calibration")
    parser.add_argument("--json", help="also write the results as JSON")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    import nncf
    import onnxruntime
    import openvino
    import torch

    from encoders.backends.calibration import Calibration
    from encoders.backends.export_cache import ExportCache

    calibration_clip, held_out = _clips()
    calibration = Calibration(calibration_clip, frames=args.calibration_frames)
    load_before = os.getloadavg()
    medians: dict = {}
    builds: dict = {}
    ceilings: dict[int, tuple[float, float]] = {}  # threads → fp32 GFLOP/s, int8 GOP/s
    profiles: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="streamer-backends-") as cache:
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            built, builds[threads] = _build(args, Path(cache), calibration)
            frames = frames_at_resize_size(held_out, built["torch"].preprocess_cfg, 16)
            agreement = _agreement(built, frames)
            _measure(built, frames, threads, args, medians)
            ceilings[threads] = (matmul_ceiling(args.seconds / 2),
                                 int8_matmul_ceiling(args.seconds / 2))  # fmt: skip
            int8 = ExportCache(cache).folder(built["onnxruntime int8"].runtime.export_key)
            pixels = _inputs(built["torch"], frames, args.batches[0])["model input"].numpy()
            profiles[threads] = onnxruntime_time_shares(int8 / "image.onnx", pixels)
    flops, linear = flops_per_image(built["torch"], frames)
    load_after = os.getloadavg()
    print(f"Machine: {machine_line(torch.device('cpu'))}; torch {torch.__version__}, OpenVINO "
          f"{openvino.__version__}, ONNX Runtime {onnxruntime.__version__}, NNCF "
          f"{nncf.__version__}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} "
          "after.")  # fmt: skip
    print(f"clip {args.model}, random weights; int8 calibrated on {args.calibration_frames} "
          f"frames of {calibration_clip.name}; pooled cosine against torch on 16 frames of "
          f"{held_out.name} (lowest / mean): "
          + ", ".join(f"{k} {v[0]:.5f} / {v[1]:.5f}" for k, v in agreement.items())
          + f". Means over {args.rounds} rounds of {args.seconds:g} s medians.\n")  # fmt: skip
    lines = _table(medians, flops, {t: c[0] for t, c in ceilings.items()})
    lines += _ceiling_lines(medians, flops, ceilings)
    for threads, shares in profiles.items():
        lines += _profile_lines(shares, args.batches[0] * linear, ceilings[threads][1], threads)
    print("\n".join(lines))
    for threads, seconds in builds.items():
        print(f"\nbuilds with {threads} thread(s): "
              + ", ".join(f"{k}: {v:.1f} s" for k, v in seconds.items()))  # fmt: skip
    if args.json:
        rows = {" ".join(map(str, k)): v for k, v in medians.items()}
        Path(args.json).write_text(json.dumps({"medians_s": rows, "cosine": agreement,
                                               "build_s": builds, "flops_per_image": flops,
                                               "matmul_ceilings_fp32_int8": ceilings,
                                               "onnxruntime_int8_ms": profiles},
                                              indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    run_script(main)
