"""Live captions cost the video nothing: the same live run with captions off and with a slow LLM.

Streams from GStreamer's RTSP server on loopback (live 25 fps test patterns), runs the pipeline
with captions from tags only (`--no-llm`) and against the LM Studio double (run as its own
process) answering every caption in --answer-s seconds, --seconds of each in all. The two
conditions alternate in --rounds segments each (off, on, on, off, ...) so that a drift of the
machine over the benchmark cancels out. Every analysed frame counts as a scene change, so the
throttle (not the scene) decides when to ask. Reports the delivered fps and latency of both
side by side, their ratio, and the caption requests the server counted against what the policy
allows (one at a time per stream, at least --interval s apart).

Run:  python bench/live_captions.py [--streams 1] [--seconds 240] [--rounds 2] [--answer-s 2]
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
sys.path.insert(0, str(REPO))
from _live_setup import abba, mean, pattern_server, random_encoder  # noqa: E402

from bench._entry import run_script  # noqa: E402
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
    encoder = random_encoder(args.encoder)
    server, names = pattern_server(args.streams, args.size)
    double = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "harness" / "serve_lmstudio.py"),
         "--delay", str(args.answer_s)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    double_url = double.stdout.readline().split()[1]
    try:
        urls = [server.url(n) for n in names]
        results: dict[str, list] = {"captions off": [], "slow LLM": []}
        urls_of = {"captions off": None, "slow LLM": double_url}
        segment = args.seconds / args.rounds
        for label in abba("captions off", "slow LLM", args.rounds):
            with tempfile.TemporaryDirectory() as folder:
                started = time.monotonic()
                summary = await one_run(urls, encoder, segment, args.interval, Path(folder),
                                        urls_of[label])  # fmt: skip
                results[label].append((summary, time.monotonic() - started))
    finally:
        out, _ = double.communicate("", timeout=30)
        server.kill()
    _report(results, json.loads(out.strip().splitlines()[-1]), args)


def _report(results, double, args) -> None:
    print(f"\n{'run':<14}{'seg':>4} {'stream':<24}{'frames':>8}{'fps':>7}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'captions':>10}")  # fmt: skip
    per: dict[tuple[str, int], list] = {}  # (condition, stream index) -> [(fps, p50, p99)]
    for label, runs in results.items():
        for seg, (summary, wall) in enumerate(runs):
            for i, s in enumerate(summary.streams):
                rate = s.frames / wall
                per.setdefault((label, i), []).append((rate, s.latency_ms[0], s.latency_ms[2]))
                p50, _, p99 = s.latency_ms
                print(f"{label:<14}{seg + 1:>4} {s.name:<24}{s.frames:>8}{rate:>7.1f}"
                      f"{p50:>8.1f}{p99:>8.1f}{s.captions:>10}")  # fmt: skip

    for i in range(args.streams):
        off, on = per[("captions off", i)], per[("slow LLM", i)]
        print(
            f"stream {i + 1}, mean over {len(on)} segment(s) each, slow LLM / captions off: "
            f"fps {mean(on, 0) / mean(off, 0):.3f}, p50 {mean(on, 1):.2f}/{mean(off, 1):.2f} ms "
            f"= {mean(on, 1) / mean(off, 1):.3f}, p99 {mean(on, 2):.2f}/{mean(off, 2):.2f} ms "
            f"= {mean(on, 2) / mean(off, 2):.3f}"
        )
    chats = double["counts"].get("POST /v1/chat/completions", 0)
    segment = args.seconds / args.rounds
    per_stream = (min(segment / args.interval, segment / args.answer_s) + 1) * args.rounds
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
    parser.add_argument("--seconds", type=float, default=240.0, help="per condition, in all")
    parser.add_argument("--rounds", type=int, default=2,
                        help="segments per condition, alternating order (ABBA...)")  # fmt: skip
    parser.add_argument("--answer-s", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=1.0, help="caption min interval (s)")
    parser.add_argument("--encoder", default="default")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.streams} RTSP stream(s) "
        f"{args.size} 25 fps; {args.seconds:.0f} s per condition in {args.rounds} segment(s); "
        f"LLM double answering in {args.answer_s} s; encoder {args.encoder} (random weights) on cpu"
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    run_script(main)
