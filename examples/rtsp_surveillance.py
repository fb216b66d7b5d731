"""RTSP surveillance: many cameras, text-query alerts, a webhook, and the web viewer.

    python examples/rtsp_surveillance.py NAME=rtsp://... [NAME=rtsp://...] \
        [--alert "a person at the door"] [--webhook URL] [--port 8080] [--out recordings]
        [--retain 7d] [--search "a red van at the gate"]

Every camera is recorded to OUT/NAME.mp4 (fragmented: a crash loses at most 2 s) with its
events in OUT/NAME.jsonl; alerts also go to the overlay, the web page and the webhook.
The run also remembers: OUT/archive keeps each camera's own packets in one-minute segments
(for --retain) and an index of its moments, searchable afterwards with
`streamer search "..." --archive OUT/archive` or here with --search.
Cameras that drop reconnect by themselves. Ctrl-C (or --seconds) stops and finishes the files.
"""

import argparse
import asyncio
import contextlib
from pathlib import Path

from streamer import (
    AnalysisConfig,
    EncoderChoice,
    OutputConfig,
    RunConfig,
    ServeConfig,
    run_pipeline,
)
from streamer.analysis.alerts import AlertRule
from streamer.archive import Archive
from streamer.archive.options import ArchiveConfig
from streamer.core.checks import seconds_of
from streamer.core.events import FirstAnalysis
from streamer.core.samples import export_cache_dir, text_cache_dir

parser = argparse.ArgumentParser()
parser.add_argument("cameras", nargs="+", metavar="NAME=URL")
parser.add_argument("--alert", action="append", default=None, help="text query (repeatable)")
parser.add_argument("--threshold", type=float, default=0.27, help="CLIP cosine to match")
parser.add_argument("--webhook", default=None)
parser.add_argument("--port", type=int, default=8080)
parser.add_argument("--out", default="recordings")
parser.add_argument(
    "--seconds", type=float, default=None, help="stop this long after the first analysed frame"
)
parser.add_argument("--weights", default="auto", help="auto, random, or a local file")
parser.add_argument("--retain", default="7d", help="keep recordings this long (e.g. 12h, 7d)")
parser.add_argument("--search", default=None, help="after the run, the archive's best moments")
args = parser.parse_args()

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
queries = args.alert or ["a person at the door"]
config = RunConfig(
    input=tuple(args.cameras),
    outputs=OutputConfig(
        video=str(out / "{stream}.mp4"), jsonl=str(out / "{stream}.jsonl"), fragmented=True
    ),
    # the command line's caches: a start in under a second once the model and labels are in
    encoder=EncoderChoice(
        "clip", "ViT-B/32", weights=args.weights, export_cache=str(export_cache_dir())
    ),
    analysis=AnalysisConfig(text_cache=str(text_cache_dir())),
    alerts=tuple(AlertRule(q, threshold=args.threshold, frames=2, cooldown_s=30) for q in queries),
    webhook=args.webhook,
    serve=ServeConfig(port=args.port),
    archive=ArchiveConfig(str(out / "archive"), retain_s=seconds_of(args.retain)),
)


async def main() -> None:
    stop, first = asyncio.Event(), FirstAnalysis()
    run = asyncio.create_task(run_pipeline(config, stop=stop, progress=True, observers=[first]))
    print(f"watch at http://127.0.0.1:{args.port}/", flush=True)
    if args.seconds is not None:  # seconds of recording, from the first analysed frame
        await first.reached(run)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), args.seconds)
        stop.set()
    summary = await run
    for stream in summary.streams:
        print(f"{stream.name}: {stream.frames} frames, {stream.reconnects} reconnects", flush=True)
    if args.search:
        with Archive(out / "archive") as archive:
            for hit in archive.search(args.search, k=5):
                moment = hit.moment
                said = moment.caption or ", ".join(tag for tag, _ in moment.tags[:3])
                print(f"found {moment.stream} at {moment.media_time:.1f} s "
                      f"(score {hit.score:.3f}): {said}")  # fmt: skip


asyncio.run(main())
