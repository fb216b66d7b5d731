"""Fixtures of the web viewer tests."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.harness.lmstudio import LmStudioDouble
from streamer import RunConfig, run_pipeline
from streamer.archive.options import ArchiveConfig


@pytest.fixture
async def double() -> AsyncIterator[LmStudioDouble]:
    """A running LM Studio double whose answers are numbered ("Caption number N."), so a
    test can tell one caption from the next."""
    server = LmStudioDouble(answer=lambda body, count: f"Caption number {count}.")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def twelve_second_clip(tmp_path_factory, sample_clip) -> Path:
    """12 s of the sample clip (looped) at 320×180, no audio: long enough that a moment lies
    seconds from the start, so playing it from there is seen to seek."""
    out = tmp_path_factory.mktemp("clips") / "twelve.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", "4", "-i", str(sample_clip), "-t", "12",
         "-vf", "scale=320:180", "-c:v", "libx264", "-preset", "ultrafast", "-an", str(out)],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def clip_archive(tmp_path_factory, twelve_second_clip, tiny_encoder) -> Path:
    """An archive made by a real run (`--archive`, a moment at least every second) over the
    12 s clip, named `twelve`."""
    folder = tmp_path_factory.mktemp("archives") / "clip"
    config = RunConfig(
        input=f"twelve={twelve_second_clip}",
        archive=ArchiveConfig(str(folder), index_every_s=1.0),
    )
    asyncio.run(run_pipeline(config, encoder=tiny_encoder))
    return folder
