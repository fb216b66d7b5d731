"""File-annotation throughput: the pipeline against its floor and a naive loop, in one run.

Modes, each run in its own process (so peak memory is per mode) on the same clip:

  floor        decode (PyAV, threaded) + H.264 encode, no analysis, no drawing
  floor+draw   decode + overlay drawing + H.264 encode, no analysis
  naive        one thread, frame by frame: decode; for sampled frames PIL preprocess (open_clip's
               own transform) + encode one image; draw; H.264 encode
  pipeline     `streamer`'s file pipeline (threaded decode, batched on-device preprocessing,
               encoder thread, writer thread)

Run:  python bench/file_annotation.py [--loops 4] [--model ViT-B/32] [--device cpu]
It prints a table of frames/s, peak RSS and ratios, for the default analysis rate and for every
frame analysed. Random weights: speed does not depend on what the weights are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _loop_clip(clip: Path, loops: int, folder: Path) -> Path:
    out = folder / f"clip_x{loops}.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            str(loops - 1),
            "-i",
            str(clip),
            "-c",
            "copy",
            str(out),
        ],
        check=True,
    )
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _writer(clip: str, out: str, preset: str):
    from streamer.sinks import VideoWriter
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


def _decode(clip: str):
    import av

    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.pts, frame.time, frame.to_ndarray(format="rgb24")


def mode_floor(args, draw: bool) -> tuple[int, float]:
    from streamer.frame import Annotation, Caption, Tag
    from streamer.overlay import Hud, Overlay, OverlayStyle

    overlay = Overlay(OverlayStyle())
    annotation = Annotation("bench", 0, 0.0, (Tag("a label", 0.5), Tag("another", 0.3)), 0.0)
    caption = Caption("bench", 0, 0.0, "Looks like: a label, another, a third one", "tags")
    started = time.perf_counter()
    writer = _writer(args.clip, args.out, args.preset)
    n = 0
    for pts, t, image in _decode(args.clip):
        if draw:
            hud = Hud(lines=(f"{t:7.2f} s frame {n}", "bench"), warning=None, status=None)
            image = overlay.draw(image, annotation=annotation, caption=caption, now_pts=t, hud=hud)
        writer.write(image, pts)
        n += 1
    writer.close()
    return n, time.perf_counter() - started


def mode_naive(args) -> tuple[int, float]:
    import numpy as np
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from encoders import create_encoder
    from streamer.frame import Annotation, Caption, Tag
    from streamer.labels import default_labels, prompts
    from streamer.overlay import Hud, Overlay, OverlayStyle
    from streamer.sampler import Sampler

    encoder = create_encoder(
        "clip", args.model, weights="random", device=args.device, precision="fp32"
    )
    model = encoder.module
    preprocess = image_transform_v2(
        PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False
    )
    labels = default_labels()
    text = encoder.embed_text(prompts(labels)).numpy()  # set-up, as in the pipeline
    overlay, sampler = Overlay(OverlayStyle()), Sampler(args.analyze_fps)
    started = time.perf_counter()
    writer = _writer(args.clip, args.out, args.preset)
    annotation, caption, n = None, None, 0
    for pts, t, image in _decode(args.clip):
        if sampler.take("bench", t):
            with torch.inference_mode():
                emb = model.encode_image(preprocess(Image.fromarray(image)).unsqueeze(0))[0]
            emb = (emb / emb.norm()).numpy()
            probs = np.exp(100 * (text @ emb - (text @ emb).max()))
            best = np.argsort(-probs)[:3]
            tags = tuple(Tag(labels[i], float(probs[i] / probs.sum())) for i in best)
            annotation = Annotation("bench", n, t, tags, 0.0)
            caption = Caption(
                "bench", n, t, "Looks like: " + ", ".join(x.label for x in tags), "tags"
            )
        hud = Hud(lines=(f"{t:7.2f} s frame {n}", "bench"), warning=None, status=None)
        writer.write(
            overlay.draw(image, annotation=annotation, caption=caption, now_pts=t, hud=hud), pts
        )
        n += 1
    writer.close()
    return n, time.perf_counter() - started


def mode_pipeline(args) -> tuple[int, float]:
    import asyncio

    from encoders import create_encoder
    from streamer import AnalysisConfig, OutputConfig, RunConfig, run_pipeline
    from streamer.labels import default_labels, prompts
    from streamer.text_cache import cached_text_embeddings

    encoder = create_encoder("clip", args.model, weights="random", device=args.device)
    config = RunConfig(
        input=args.clip,
        outputs=OutputConfig(video=args.out, preset=args.preset, copy_audio=False),
        analysis=AnalysisConfig(analyze_fps=args.analyze_fps, text_cache=args.text_cache),
    )

    async def embed(texts):
        return encoder.embed_text(texts).numpy()

    # Set-up outside the timed part, as for the naive loop: fill the label-embedding cache.
    asyncio.run(
        cached_text_embeddings(args.text_cache, encoder.info, prompts(default_labels()), embed)
    )
    started = time.perf_counter()
    frames = asyncio.run(run_pipeline(config, encoder=encoder)).frames
    return frames, time.perf_counter() - started


def run_one(args) -> None:
    """Child process: run one mode, print one JSON line."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    # Each mode times its frame loop only: model loading and label embeddings are set-up.
    frames, wall = {
        "floor": lambda: mode_floor(args, draw=False),
        "floor+draw": lambda: mode_floor(args, draw=True),
        "naive": lambda: mode_naive(args),
        "pipeline": lambda: mode_pipeline(args),
    }[args.mode]()
    print(
        json.dumps(
            {
                "mode": args.mode,
                "frames": frames,
                "wall_s": wall,
                "fps": frames / wall,
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


def spawn(mode: str, clip: Path, folder: Path, args, analyze_fps: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--clip",
        str(clip),
        "--out",
        str(folder / f"{mode}.mp4"),
        "--model",
        args.model,
        "--device",
        args.device,
        "--preset",
        args.preset,
        "--analyze-fps",
        analyze_fps,
        "--text-cache",
        str(folder / "text"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loops", type=int, default=4, help="sample clip repeated this many times")
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument(
        "--analyze-fps", default="2", help="default analysis rate ('all' = every frame)"
    )
    parser.add_argument("--skip-every-frame", action="store_true", help="only the default rate")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--text-cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        args.analyze_fps = None if args.analyze_fps == "all" else float(args.analyze_fps)
        run_one(args)
        return

    from streamer.samples import sample_clip

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = _loop_clip(sample_clip(REPO / ".cache" / "samples"), args.loops, folder)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
            f"clip: sample x{args.loops} (1280x720 H.264, 25 fps); encoder clip {args.model} "
            f"on {args.device}; x264 preset {args.preset}"
        )
        rates = [args.analyze_fps] + ([] if args.skip_every_frame else ["all"])
        results = {m: spawn(m, clip, folder, args, rates[0]) for m in ("floor", "floor+draw")}
        for rate in rates:
            for mode in ("naive", "pipeline"):
                results[f"{mode}@{rate}"] = spawn(mode, clip, folder, args, rate)
        _report(results, rates)


def _report(results: dict, rates: list[str]) -> None:
    print(f"\n{'mode':<16}{'frames':>8}{'fps':>9}{'peak RSS MB':>13}")
    for name, r in results.items():
        print(f"{name:<16}{r['frames']:>8}{r['fps']:>9.1f}{r['peak_rss_mb']:>13.0f}")
    floor, draw = results["floor"]["fps"], results["floor+draw"]["fps"]
    print()
    for rate in rates:
        pipe, naive = results[f"pipeline@{rate}"]["fps"], results[f"naive@{rate}"]["fps"]
        print(
            f"analysis {rate:>3} fps: pipeline/floor = {pipe / floor:.2f}, "
            f"pipeline/(floor+draw) = {pipe / draw:.2f}, pipeline/naive = {pipe / naive:.2f}"
        )


if __name__ == "__main__":
    main()
