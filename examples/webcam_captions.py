"""Live captioning of a webcam: captions from a local LLM server, shown in the browser.

    python examples/webcam_captions.py [CAMERA] [--llm-url URL] [--seconds S] [--port P]

CAMERA is a device index (0), a device path (/dev/video0) or any live source (rtsp://...);
default 0. Captions come from LM Studio (or any OpenAI-compatible server) at --llm-url, or
from the zero-shot tags while no server answers. Open http://127.0.0.1:PORT/ to watch; the
captions are also kept in captions.srt and captions.jsonl. Ctrl-C (or --seconds) stops.
"""

import argparse
import asyncio
import contextlib

from streamer import (
    AnalysisConfig,
    CaptionPolicy,
    EncoderChoice,
    OutputConfig,
    RunConfig,
    ServeConfig,
    run_pipeline,
)
from streamer.core.events import FirstAnalysis
from streamer.core.samples import export_cache_dir, text_cache_dir
from streamer.llm import LlmConfig

parser = argparse.ArgumentParser()
parser.add_argument("camera", nargs="?", default="0")
parser.add_argument("--llm-url", default="http://localhost:1234/v1")
parser.add_argument(
    "--seconds", type=float, default=None, help="stop this long after the first analysed frame"
)
parser.add_argument("--port", type=int, default=8080)
parser.add_argument("--weights", default="auto", help="auto, random, or a local file")
args = parser.parse_args()

config = RunConfig(
    input=f"webcam={args.camera}",
    live=True,  # freshest frame wins, also when CAMERA is a recording
    outputs=OutputConfig(srt="captions.srt", jsonl="captions.jsonl"),
    # the command line's caches: a start in under a second once the model and labels are in
    encoder=EncoderChoice(
        "clip", "ViT-B/32", weights=args.weights, export_cache=str(export_cache_dir())
    ),
    analysis=AnalysisConfig(text_cache=str(text_cache_dir())),
    captions=CaptionPolicy(min_interval=3.0, max_age=15.0),  # a new caption at most every 3 s
    llm=LlmConfig(url=args.llm_url),
    serve=ServeConfig(port=args.port),
)


async def main() -> None:
    stop, first = asyncio.Event(), FirstAnalysis()
    run = asyncio.create_task(run_pipeline(config, stop=stop, observers=[first]))
    print(f"watch at http://127.0.0.1:{args.port}/", flush=True)
    if args.seconds is not None:  # seconds of captioning, from the first analysed frame
        await first.reached(run)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), args.seconds)
        stop.set()
    summary = await run
    print(f"{summary.frames} frames shown, {summary.captions} captions", flush=True)


asyncio.run(main())
