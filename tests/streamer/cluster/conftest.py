"""What the cluster tests share: four different short clips."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def clips(make_clip, tmp_path_factory) -> list[Path]:
    """Four different 8-s clips a, b, c, d (320×240, 25 fps), each cut a second further into
    the base, so mixed-up outputs would show; long enough to be mid-run when a fault hits."""
    folder = tmp_path_factory.mktemp("cluster-clips")
    base = make_clip("cluster.mp4", audio_codec=None, seconds=8)
    out = []
    for i, name in enumerate("abcd"):
        path = folder / f"{name}.mp4"
        cut = ["ffmpeg", "-v", "error", "-y", "-ss", str(i), "-i", str(base), "-c:v", "libx264"]
        subprocess.run([*cut, "-preset", "ultrafast", str(path)], check=True)
        out.append(path)
    return out
