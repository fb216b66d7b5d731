"""Fixtures for the overlay and sink tests: ffprobe, and small clips made with ffmpeg's lavfi."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from media import ffprobe


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        # Integration tests run in CI, so a missing tool is a broken setup, not a skip.
        pytest.fail(f"{tool} is missing: install ffmpeg (Debian: apt-get install ffmpeg)")
    return path


@pytest.fixture(scope="session")
def probe() -> Callable[..., dict[str, Any]]:
    """`probe(path, *extra_args)` → ffprobe's JSON (streams and format, frames counted)."""
    return ffprobe


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory) -> Callable[..., Path]:
    """`make_clip(name, audio_codec="aac", seconds=2)` → a 320×240 25 fps H.264 clip with a
    440 Hz tone (no audio when `audio_codec` is None), made once per session."""
    ffmpeg = _need("ffmpeg")
    folder = tmp_path_factory.mktemp("lavfi")
    made: dict[tuple[str, str | None, float], Path] = {}

    def make(name: str, audio_codec: str | None = "aac", seconds: float = 2) -> Path:
        key = (name, audio_codec, seconds)
        if key not in made:
            out = folder / name
            video = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]
            audio = ["-f", "lavfi", "-i", "sine=frequency=440", "-c:a", audio_codec]
            cmd = [ffmpeg, "-v", "error", "-y", *video, *(audio if audio_codec else [])]
            cmd += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", str(out)]
            subprocess.run(cmd, check=True)
            made[key] = out
        return made[key]

    return make
