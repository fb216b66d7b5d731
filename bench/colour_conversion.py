"""The writers' RGB → yuv420p conversion, three ways, side by side on the sample clip's frames.

  fresh      the picture copied into a frame of its own, converted by a context made for it
             (PyAV's `VideoFrame.from_ndarray(...).reformat(...)`: the archive's recording
             by encoding did this)
  copy       the picture copied, one context reused (the `-o` video writer did this)
  view       the picture read where it lies, one context reused
             (`streamer.outputs.yuv.to_yuv420`, what both writers do now; a picture whose
             rows are not a multiple of 64 bytes is first copied into rows that are)

Every frame goes through each way in turn, which way first rotating from frame to frame
(the picture is in the CPU's cache for the second and third: no way always gets it so), and
the three must give the same planes. Printed: median milliseconds a frame over `--rounds`
passes of the frames, and each against `view`.

Run:  python bench/colour_conversion.py [--clip FILE] [--frames 120] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import av  # noqa: E402
import numpy as np  # noqa: E402
from av.video.reformatter import Colorspace, VideoReformatter  # noqa: E402

from bench._entry import run_script  # noqa: E402
from streamer.core.samples import sample_clip  # noqa: E402
from streamer.outputs.yuv import to_yuv420  # noqa: E402


def _fresh(image: np.ndarray, _: VideoReformatter) -> av.VideoFrame:
    rgb = av.VideoFrame.from_ndarray(image, format="rgb24")
    return rgb.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709)


def _copy(image: np.ndarray, reformatter: VideoReformatter) -> av.VideoFrame:
    rgb = av.VideoFrame.from_ndarray(image, format="rgb24")
    return reformatter.reformat(rgb, format="yuv420p", dst_colorspace=Colorspace.ITU709)


WAYS = {"fresh": _fresh, "copy": _copy, "view": to_yuv420}


def _pictures(clip: str | None, count: int) -> list[np.ndarray]:
    with av.open(clip or str(sample_clip())) as container:
        frames = itertools.islice(container.decode(video=0), count)
        return [frame.to_ndarray(format="rgb24") for frame in frames]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", help="a video file (default: the sample clip, 720p)")
    parser.add_argument("--frames", type=int, default=120, help="frames of the clip to convert")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the frames")
    args = parser.parse_args(argv)
    pictures = _pictures(args.clip, args.frames)
    if not pictures:
        raise SystemExit(f"no frame decoded from {args.clip or 'the sample clip'}")
    contexts = {name: VideoReformatter() for name in WAYS}
    spent: dict[str, list[float]] = {name: [] for name in WAYS}
    for _ in range(args.rounds):
        totals = dict.fromkeys(WAYS, 0.0)
        for index, image in enumerate(pictures):
            made = {}
            order = list(WAYS)[index % 3 :] + list(WAYS)[: index % 3]  # each way first in turn
            for name in order:
                way = WAYS[name]
                started = time.perf_counter()
                frame = way(image, contexts[name])
                totals[name] += time.perf_counter() - started
                made[name] = frame.to_ndarray()
            if not all(np.array_equal(made["view"], other) for other in made.values()):
                raise SystemExit("the three ways gave different pixels")
        for name in WAYS:
            spent[name].append(totals[name] / len(pictures) * 1000)
    height, width = pictures[0].shape[:2]
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores; PyAV {av.__version__}")
    print(f"RGB → yuv420p BT.709, {width}x{height}, {len(pictures)} frames × {args.rounds} rounds")
    view = statistics.median(spent["view"])
    for name in WAYS:
        ms = statistics.median(spent[name])
        print(f"  {name:6s} {ms:6.3f} ms a frame   {ms / view:5.2f}x view")


if __name__ == "__main__":
    run_script(main)
