"""Live captions cost the video nothing: the same live run with captions off and with a slow LLM.

Streams from GStreamer's RTSP server on loopback (live 25 fps test patterns), runs the pipeline
twice for --seconds each: once with captions from tags only (`--no-llm`), once against the
LM Studio double (run as its own process) answering every caption in --answer-s seconds.
Every analysed frame counts as a scene change, so the throttle (not the scene) decides when
to ask. Reports the delivered fps and latency of both runs side by side, their ratio, and
the caption requests the server counted against what the policy allows (one at a time per
stream, at least --interval s apart).

Run:  python bench/live_captions.py [--streams 1] [--seconds 240] [--answer-s 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "streamer")]

from live_helpers import SYSTEM_PYTHON, RtspServer  # noqa: E402

from encoders import create_encoder  # noqa: E402
from streamer import CaptionPolicy, OutputConfig, RunConfig, run_pipeline  # noqa: E402
from streamer.llm import LlmConfig  # noqa: E402


async def one_run(urls, encoder, seconds, interval, folder: Path, llm_url: str | None):
    config = RunConfig(
        input=tuple(urls),
        outputs=OutputConfig(
            video=str(folder / "{stream}.mp4"), jsonl=str(folder / "{stream}.jsonl"),
            preset="ultrafast",
        ),
        captions=CaptionPolicy(min_interval=interval, max_age=interval, scene_threshold=1e-9),
        llm=LlmConfig(url=llm_url, read_timeout=30.0) if llm_url else None,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=encoder, stop=stop))
    await asyncio.sleep(seconds)
    stop.set()
    return await task


async def main_async(args) -> None:
    kind, _, model = args.encoder.partition(":")
    encoder = create_encoder(kind, model or ("tiny" if kind == "clip" else None),
                             weights="random", device="cpu")  # fmt: skip
    names = [f"cam{i + 1}" for i in range(args.streams)]
    server = RtspServer(SYSTEM_PYTHON, {n: f"pattern:{args.size}" for n in names})
    server.start()
    double = subprocess.Popen(
        [sys.executable, str(REPO / "tests/doubles/serve.py"), "--delay", str(args.answer_s)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    double_url = double.stdout.readline().split()[1]
    try:
        urls = [server.url(n) for n in names]
        results = {}
        for label, url in (("captions off", None), ("slow LLM", double_url)):
            with tempfile.TemporaryDirectory() as folder:
                started = time.monotonic()
                summary = await one_run(urls, encoder, args.seconds, args.interval, Path(folder),
                                        url)  # fmt: skip
                results[label] = (summary, time.monotonic() - started)
    finally:
        out, _ = double.communicate("", timeout=30)
        server.kill()
    _report(results, json.loads(out.strip().splitlines()[-1]), args)


def _report(results, double, args) -> None:
    print(f"\n{'run':<14}{'stream':<24}{'frames':>8}{'fps':>7}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'captions':>10}")  # fmt: skip
    fps = {}
    for label, (summary, wall) in results.items():
        for s in summary.streams:
            rate = s.frames / wall
            fps.setdefault(label, []).append((rate, s.latency_ms))
            print(f"{label:<14}{s.name:<24}{s.frames:>8}{rate:>7.1f}{s.latency_ms[0]:>8.1f}"
                  f"{s.latency_ms[2]:>8.1f}{s.captions:>10}")  # fmt: skip
    off, on = fps["captions off"], fps["slow LLM"]
    for (r_off, l_off), (r_on, l_on) in zip(off, on, strict=True):
        print(
            f"ratio (slow LLM / captions off): fps {r_on / r_off:.3f}, "
            f"p50 {l_on[0] / l_off[0]:.2f}, p99 {l_on[2] / l_off[2]:.2f}"
        )
    chats = double["counts"].get("POST /v1/chat/completions", 0)
    per_stream = min(args.seconds / args.interval, args.seconds / args.answer_s) + 1
    print(
        f"caption requests counted by the server: {chats}; the policy allows at most "
        f"{per_stream * args.streams:.0f} ({args.streams} stream(s), one in flight each, "
        f"≥ {args.interval} s apart, {args.answer_s} s per answer); most at once: "
        f"{double['max_in_flight']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--answer-s", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=1.0, help="caption min interval (s)")
    parser.add_argument("--encoder", default="default")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.streams} RTSP stream(s) "
        f"{args.size} 25 fps; {args.seconds:.0f} s per run; LLM double answering in "
        f"{args.answer_s} s; encoder {args.encoder} (random weights) on cpu"
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
