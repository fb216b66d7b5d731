"""RTSP surveillance: many cameras, text-query alerts, a webhook, and the web viewer.

    python examples/rtsp_surveillance.py NAME=rtsp://... [NAME=rtsp://...] \
        [--alert "a person at the door"] [--webhook URL] [--port 8080] [--out recordings]

Every camera is recorded to OUT/NAME.mp4 (fragmented: a crash loses at most 2 s) with its
events in OUT/NAME.jsonl; alerts also go to the overlay, the web page and the webhook.
Cameras that drop reconnect by themselves. Ctrl-C (or --seconds) stops and finishes the files.
"""

import argparse
import asyncio
import contextlib
from pathlib import Path

from streamer import EncoderChoice, OutputConfig, RunConfig, ServeConfig, run_pipeline
from streamer.analysis.alerts import AlertRule

parser = argparse.ArgumentParser()
parser.add_argument("cameras", nargs="+", metavar="NAME=URL")
parser.add_argument("--alert", action="append", default=None, help="text query (repeatable)")
parser.add_argument("--threshold", type=float, default=0.27, help="CLIP cosine to match")
parser.add_argument("--webhook", default=None)
parser.add_argument("--port", type=int, default=8080)
parser.add_argument("--out", default="recordings")
parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
parser.add_argument("--weights", default="auto", help="auto, random, or a local file")
args = parser.parse_args()

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
queries = args.alert or ["a person at the door"]
config = RunConfig(
    input=tuple(args.cameras),
    outputs=OutputConfig(
        video=str(out / "{stream}.mp4"), jsonl=str(out / "{stream}.jsonl"), fragmented=True
    ),
    encoder=EncoderChoice("clip", "ViT-B/32", weights=args.weights),
    alerts=tuple(AlertRule(q, threshold=args.threshold, frames=2, cooldown_s=30) for q in queries),
    webhook=args.webhook,
    serve=ServeConfig(port=args.port),
)


async def main() -> None:
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, stop=stop, progress=True))
    print(f"watch at http://127.0.0.1:{args.port}/", flush=True)
    if args.seconds is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), args.seconds)
        stop.set()
    summary = await run
    for stream in summary.streams:
        print(f"{stream.name}: {stream.frames} frames, {stream.reconnects} reconnects", flush=True)


asyncio.run(main())
