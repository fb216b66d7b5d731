"""Live RTSP streams: delivered fps and end-to-end latency, then recovery from a server outage.

Starts GStreamer's RTSP server on loopback (Debian's python3 with gi, as the tests do) serving N
live 25 fps test patterns, runs `streamer`'s pipeline on all of them in one process (each stream
recorded to MP4 + JSON Lines, analysis at the default rate), and reports per stream:

  phase 1 (steady): delivered fps over --seconds once every stream delivers, latency
                    p50/p95/p99 (capture → frame written with its overlay, measured by the
                    pipeline), drops;
  phase 2 (outage): the server is killed for --outage seconds and restarted; how long after
                    its return each stream was online again, and how many reconnect attempts
                    each logged.

Run:  python bench/live_streams.py [--streams 4] [--size 640x360] [--seconds 30] [--encoder default]

The measuring lives in `streamer.bench.live`; the server is `bench.harness.rtsp`'s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402
from bench.harness.rtsp import SYSTEM_PYTHON, RtspServer  # noqa: E402
from encoders import create_encoder  # noqa: E402
from streamer.bench.live import outage, print_outage, print_steady, steady  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=5.0)
    parser.add_argument("--encoder", default="default", help="default | clip (tiny) | clip:MODEL")
    args = parser.parse_args()
    kind, _, model = args.encoder.partition(":")
    encoder = create_encoder(kind, model or ("tiny" if kind == "clip" else None),
                             weights="random", device="cpu")  # fmt: skip
    names = [f"cam{i + 1}" for i in range(args.streams)]
    server = RtspServer(SYSTEM_PYTHON, {n: f"pattern:{args.size}" for n in names})
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.streams} RTSP streams "
        f"{args.size} 25 fps from loopback; encoder {encoder.info.kind} {encoder.info.model} "
        f"(random weights) on cpu; outputs MP4 (x264 ultrafast) + JSONL per stream"
    )
    server.start()
    try:
        with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
            urls = [server.url(n) for n in names]
            print_steady(steady(urls, encoder, args.seconds, Path(one)), args.seconds)
            print_outage(outage(server, names, encoder, args.outage, Path(two)), args.outage)
    finally:
        server.kill()


if __name__ == "__main__":
    run_script(main)
