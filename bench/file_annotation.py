"""File-annotation throughput: the pipeline against its floor and a naive loop, in one run.

Modes, each run in its own process (so peak memory is per mode) on the same clip:

  floor        decode (PyAV, threaded) + H.264 encode, no analysis, no drawing
  floor+draw   decode + overlay drawing + H.264 encode, no analysis
  naive        one thread, frame by frame: decode; for sampled frames PIL preprocess (open_clip's
               own transform) + encode one image; draw; H.264 encode
  pipeline     `streamer`'s file pipeline (threaded decode, batched on-device preprocessing,
               encoder thread, writer thread), its encoder loaded as `streamer run` loads it
               (`--backend auto`: OpenVINO on a CPU, from the command line's export cache)

Run:  python bench/file_annotation.py [--loops 4] [--model ViT-B/32] [--backend torch]
It prints a table of frames/s, peak RSS and ratios, for the default analysis rate and for every
frame analysed. Random weights: speed does not depend on what the weights are.

The modes live in `streamer.bench.file`; `streamer bench pipeline` runs them too, with the live
(paced) rows added.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402
from streamer.bench.file import PipelineEncoder  # noqa: E402
from streamer.bench.pipeline import PipelineBench, run_pipeline_bench  # noqa: E402
from streamer.core.samples import export_cache_dir, sample_clip  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loops", type=int, default=4, help="sample clip repeated this many times")
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="auto", help="the pipeline's, as `streamer run`'s")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument(
        "--analyze-fps", default="2", help="default analysis rate ('all' = every frame)"
    )
    parser.add_argument("--skip-every-frame", action="store_true", help="only the default rate")
    args = parser.parse_args()
    rate = None if args.analyze_fps.strip().lower() == "all" else float(args.analyze_fps)
    bench = PipelineBench(
        clip=sample_clip(REPO / ".cache" / "samples"),
        loops=args.loops,
        model=args.model,
        device=args.device,
        encoder=PipelineEncoder(backend=args.backend, export_cache=str(export_cache_dir())),
        preset=args.preset,
        analyze_fps=rate,
        every_frame=not args.skip_every_frame,
        live=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        report = run_pipeline_bench(
            bench, Path(tmp), progress=lambda name: print(f"running {name} ...", file=sys.stderr)
        )
    print(report.markdown())


if __name__ == "__main__":
    run_script(main)
