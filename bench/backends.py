"""Torch against OpenVINO fp32 on this CPU: the same encoder, side by side in one run.

One process builds the encoder twice, on torch (fp32, eager) and on OpenVINO (fp32, exported
once into a fresh cache folder), checks that they agree on real frames of the sample clip
(pooled-embedding cosine), and then times both, alternating A B B A over `--rounds` so a drift
of the machine's load cancels out. Two inputs per batch size:

  model input   normalised Bx3xSxS float32 already in memory: the encoder alone
  frames        uint8 frames at the encoder's resize size (as the pipeline hands them over:
                the source scales them while decoding), so crop and normalisation are in

Prints the median milliseconds per batch (the mean of the rounds' medians), images per second,
images per second per thread (both run torch's thread count: one per core unless `--threads`),
and OpenVINO's time as a fraction of torch's; the same for the
fastest batch of all rounds (on a machine shared with other work, the least disturbed one);
then what each took to build (torch: create the model; OpenVINO: create the model, export and
compile on the first run; load the export and compile on a later one). Random weights: speed
does not depend on them.

Run:  python bench/backends.py [--model ViT-B/32] [--batches 8] [--seconds 10] [--rounds 2]
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
from streamer.bench.measure import machine_line, time_runs  # noqa: E402

BACKENDS = ("torch", "openvino")


def _frames(cfg: encoders.PreprocessConfig, count: int) -> list[np.ndarray]:
    """`count` real frames of the sample clip, scaled to the encoder's resize size."""
    import av
    import PIL.Image

    from encoders.preprocess import resized_shape
    from streamer.core.samples import sample_clip

    frames = []
    with av.open(str(sample_clip())) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 16 == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    out = []
    for frame in frames:
        height, width = resized_shape(frame.shape[0], frame.shape[1], cfg)
        image = PIL.Image.fromarray(frame).resize((width, height), PIL.Image.Resampling.BICUBIC)
        out.append(np.asarray(image))
    return out


def _build(model: str, cache: Path) -> tuple[dict, dict]:
    """The two encoders, and what building each took (seconds)."""
    started = time.perf_counter()
    built = {"torch": encoders.create_encoder("clip", model, weights="random", device="cpu",
                                              precision="fp32")}  # fmt: skip
    seconds = {"torch build": time.perf_counter() - started}
    for label in ("openvino build + export", "openvino build + cached export"):
        started = time.perf_counter()
        built["openvino"] = encoders.create_encoder(
            "clip", model, weights="random", backend="openvino", export_cache=cache
        )
        seconds[label] = time.perf_counter() - started
    return built, seconds


def _agreement(built: dict, frames: list[np.ndarray]) -> float:
    """The lowest pooled-embedding cosine between the two backends on `frames`."""
    ours = built["openvino"].embed(frames).numpy()
    reference = built["torch"].embed(frames).numpy()
    return float((ours * reference).sum(axis=1).min())


def _inputs(encoder: encoders.Encoder, frames: list[np.ndarray], batch: int) -> dict:
    import torch

    from encoders.backends.frames import frames_to_pixels

    chosen = np.stack([frames[i % len(frames)] for i in range(batch)])
    pixels = torch.from_numpy(frames_to_pixels(chosen, encoder.preprocess_cfg))  # both take it
    return {"model input": pixels, "frames": chosen}


def _measure(built: dict, frames: list[np.ndarray], args: argparse.Namespace) -> dict:
    """Seconds per batch: {(input, batch, backend): [(median, fastest) per round]}."""
    medians: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    for round_number in range(args.rounds):
        order = BACKENDS if round_number % 2 == 0 else BACKENDS[::-1]  # A B, then B A
        for batch in args.batches:
            inputs = _inputs(built["torch"], frames, batch)
            for name, images in inputs.items():
                for backend in order:
                    encoder = built[backend]
                    timing = time_runs(lambda e=encoder, i=images: e.embed(i),
                                       seconds=args.seconds)  # fmt: skip
                    medians.setdefault((name, batch, backend), []).append(
                        (timing.median_s, min(timing.runs))
                    )
                    print(f"round {round_number + 1} {name} b{batch} {backend}: "
                          f"{timing.median_ms:.1f} ms", file=sys.stderr)  # fmt: skip
    return medians


def _table(medians: dict, threads: int) -> list[str]:
    lines = [
        "| input | batch | backend | ms per batch | img/s | img/s per thread | ÷ torch "
        "| fastest batch (ms) | ÷ torch |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, batch, backend), values in medians.items():
        seconds = statistics.mean(v[0] for v in values)
        fastest = min(v[1] for v in values)
        reference = medians[(name, batch, "torch")]
        torch_seconds = statistics.mean(v[0] for v in reference)
        torch_fastest = min(v[1] for v in reference)
        lines.append(
            f"| {name} | {batch} | {backend} | {seconds * 1e3:.1f} | {batch / seconds:.1f} | "
            f"{batch / seconds / threads:.1f} | {seconds / torch_seconds:.3f}× | "
            f"{fastest * 1e3:.1f} | {fastest / torch_fastest:.3f}× |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B/32", help="CLIP model (random weights)")
    parser.add_argument("--batches", default="8", help="batch sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds, alternating")
    parser.add_argument(
        "--threads", type=int, help="threads of both backends (default: torch's, one per core; "
        "1 is steadier on a busy machine)",
    )  # fmt: skip
    parser.add_argument("--json", help="also write the results as JSON")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    import openvino
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # OpenVINO compiles with torch's count
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="streamer-backends-") as cache:
        built, build_seconds = _build(args.model, Path(cache))
        frames = _frames(built["torch"].preprocess_cfg, 8)
        cosine = _agreement(built, frames)
        medians = _measure(built, frames, args)
    load_after = os.getloadavg()
    print(f"Machine: {machine_line(torch.device('cpu'))}; OpenVINO {openvino.__version__}; "
          f"torch threads {torch.get_num_threads()}; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after.")  # fmt: skip
    print(f"clip {args.model}, random weights, fp32 both; lowest pooled cosine OpenVINO vs "
          f"torch on 8 real frames: {cosine:.7f}. Means over {args.rounds} rounds of "
          f"{args.seconds:g} s medians.\n")  # fmt: skip
    print("\n".join(_table(medians, torch.get_num_threads())))
    print("\n" + ", ".join(f"{k}: {v:.2f} s" for k, v in build_seconds.items()))
    if args.json:
        rows = {" ".join(map(str, k)): v for k, v in medians.items()}
        Path(args.json).write_text(json.dumps({"medians_s": rows, "cosine": cosine,
                                               "build_s": build_seconds}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
