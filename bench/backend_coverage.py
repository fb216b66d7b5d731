"""Does every model `streamer encoders list` shows run on every exporting backend? One by one.

The equivalence tests (tests/encoders/test_equivalence.py) check CLIP ViT-B/32 and ViT-B/16
and DINOv2 small and base on every run of the suite; the large models (ViT-L/14, DINOv2 large
and giant) take minutes and gigabytes each to export, too much for CI on two cores. This script
checks them on demand, as a user's first run would meet them: each model is built on torch
(random weights, fp32), then created on each backend with a fresh export cache (exported and
written to disk, then loaded, as `streamer run` does), and its pooled embeddings are compared
with torch's on real frames of the sample clip. Each model runs in a child process of its own,
so one model's memory is gone before the next starts and a crash is reported, not fatal.

The table: model, backend, the lowest pooled cosine against torch (the fp32 bar is 0.9999),
the export time, and the child's peak memory; or the first line of the error that stopped it.

Run:  python bench/backend_coverage.py [--models clip:ViT-L/14,dinov2:giant]
                                       [--backends openvino,onnxruntime] [--frames 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402

MIN_COSINE = 0.9999  # the fp32 bar of the equivalence tests


def _child(kind: str, model: str, backends: list[str], count: int) -> None:
    """Build `kind:model` on torch and on each backend; print one JSON line per backend."""
    import numpy as np

    import encoders
    from bench.backends import frames_at_resize_size
    from encoders.backends.frames import encode_frames
    from streamer.core.samples import sample_clip

    reference = encoders.create_encoder(kind, model, weights="random", device="cpu",
                                        precision="fp32", backend="torch")  # fmt: skip
    clip = sample_clip(REPO / ".cache" / "samples")
    frames = frames_at_resize_size(clip, reference.preprocess_cfg, count)
    expected = reference.embed(frames).numpy()
    for name in backends:
        row = {"model": f"{kind}:{model}", "backend": name}
        try:
            with tempfile.TemporaryDirectory() as cache:
                started = time.perf_counter()
                encoder = encoders.create_encoder(kind, model, weights="random", device="cpu",
                                                  backend=name, export_cache=cache)  # fmt: skip
                row["export_s"] = time.perf_counter() - started
                _, pooled = encode_frames(frames, encoder.preprocess_cfg, encoder.runtime.run)
                pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
                row["cosine"] = float((pooled * expected).sum(axis=1).min())
                del encoder
        except Exception as exc:  # any failure is the answer for this combination
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        row["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps(row), flush=True)


def _run(spec: str, backends: list[str], count: int) -> list[dict]:
    command = [sys.executable, __file__, "--child", spec, "--backends", ",".join(backends),
               "--frames", str(count)]  # fmt: skip
    print(f"{spec}: ...", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        seen = {row["backend"] for row in rows}
        rows += [{"model": spec, "backend": name, "error": f"the process died: {reason[:160]}"}
                 for name in backends if name not in seen]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", help="kind:model, comma-separated (default: every listed one)")
    parser.add_argument("--backends", default="openvino,onnxruntime")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.child:
        kind, _, model = args.child.partition(":")
        _child(kind, model, backends, args.frames)
        return
    if args.models:
        specs = [s.strip() for s in args.models.split(",") if s.strip()]
    else:
        from encoders.registry import list_encoders

        specs = [f"{spec.kind}:{spec.model}" for spec in list_encoders()]
    rows = [row for spec in specs for row in _run(spec, backends, args.frames)]
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}; random weights; "
          f"{args.frames} frames of the sample clip at the resize size; a fresh export cache "
          "per model and backend.\n")  # fmt: skip
    print("| model | backend | lowest cosine vs torch | export + load (s) | peak memory (GiB) |")
    print("|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['model']} | {row['backend']} | fails: {row['error']} | | |")
            continue
        mark = "" if row["cosine"] >= MIN_COSINE else " (below 0.9999)"
        print(
            f"| {row['model']} | {row['backend']} | {row['cosine']:.6f}{mark} | "
            f"{row['export_s']:.1f} | {row['peak_gib']:.1f} |"
        )


if __name__ == "__main__":
    run_script(main)
