"""Fixtures for the overlay, sink and source tests: ffprobe, small clips made with ffmpeg's lavfi,
and for live sources a real RTSP server and a silent TCP server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_helpers import (
    SYSTEM_PYTHON,
    FlakyFileServer,
    MjpegServer,
    RtspServer,
    SilentServer,
    StaticServer,
)
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


# ---------------------------------------------------------------------------------------------
# Live sources: a real RTSP server (GStreamer's, run by Debian's Python), a silent TCP server, and
# a static HTTP server (HLS playlist, remote file). The server classes live in `live_helpers`.

_GI_CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'qtdemux', 'h264parse') "
    "if Gst.ElementFactory.find(e) is None]; "
    "print(' '.join(missing)); raise SystemExit(1 if missing else 0)"
)
_RTSP_PACKAGES = (
    "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad"
)


@pytest.fixture(scope="session")
def gst_rtsp() -> str:
    """Debian's Python with GStreamer's RTSP server; fails (not skips) when it is missing,
    since CI installs it (`bash scripts/setup.sh --test`)."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.fail(f"{SYSTEM_PYTHON} is missing: the RTSP test server runs on Debian's Python")
    check = subprocess.run([SYSTEM_PYTHON, "-c", _GI_CHECK], capture_output=True, text=True)
    if check.returncode != 0:
        why = check.stdout.strip() and f"missing GStreamer elements: {check.stdout.strip()}"
        pytest.fail(
            f"GStreamer's RTSP server is not usable ({why or check.stderr.strip()[-300:]}). "
            f"Fix: bash scripts/setup.sh --test (Debian: apt-get install {_RTSP_PACKAGES})"
        )
    return SYSTEM_PYTHON


@pytest.fixture(scope="session")
def rtsp_server(gst_rtsp, small_clip) -> Iterator[RtspServer]:
    """A shared RTSP server: live patterns at /cam1 and /cam2, the 2 s small clip at /clip
    (served once: one test reads it)."""
    server = RtspServer(gst_rtsp, {"cam1": "pattern", "cam2": "pattern", "clip": small_clip})
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_rtsp_server(gst_rtsp) -> Iterator[RtspServer]:
    """An RTSP server (live pattern at /cam) this test may kill, freeze and restart."""
    server = RtspServer(gst_rtsp, {"cam": "pattern"})
    server.start()
    yield server
    server.kill()  # SIGKILL ends a frozen (SIGSTOPped) server too


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A TCP server that accepts connections and never sends a byte."""
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def hls_server(tmp_path_factory, small_clip) -> Iterator[StaticServer]:
    """HTTP on 127.0.0.1 serving `small.mp4` (the small clip, index first),
    `small/index.m3u8` (the same clip as a finished HLS playlist of 1 s segments, with
    `small/master.m3u8` naming it as its one variant) and `live/index.m3u8` (a live playlist
    as a client sees it: a window of the last segments, no `#EXT-X-ENDLIST`)."""
    folder = tmp_path_factory.mktemp("http")
    (folder / "small").mkdir()
    (folder / "live").mkdir()
    ffmpeg = _need("ffmpeg")
    # Index first: Python's file server cannot serve byte ranges, so FFmpeg must not seek.
    faststart = ["-c", "copy", "-movflags", "+faststart", str(folder / "small.mp4")]
    subprocess.run([ffmpeg, "-v", "error", "-i", str(small_clip), *faststart], check=True)
    hls = ["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"]
    hls += ["-master_pl_name", "master.m3u8"]
    playlist = folder / "small" / "index.m3u8"
    cmd = [ffmpeg, "-v", "error", "-i", str(small_clip), "-an", "-c", "copy", *hls, str(playlist)]
    subprocess.run(cmd, check=True)
    live = ["-f", "hls", "-hls_time", "0.5", "-hls_list_size", "2", "-hls_flags", "omit_endlist"]
    cmd = [ffmpeg, "-v", "error", "-i", str(small_clip), "-an", "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "12", *live, str(folder / "live" / "index.m3u8")]  # fmt: skip
    subprocess.run(cmd, check=True)
    server = StaticServer(folder)
    yield server
    server.close()


@pytest.fixture
def flaky_file_server(hls_server) -> Iterator[FlakyFileServer]:
    """The small clip (index first) over HTTP; its first download breaks off half-way."""
    server = FlakyFileServer(Path(hls_server.folder) / "small.mp4")
    yield server
    server.close()


@pytest.fixture
def mjpeg_server(small_clip) -> Iterator[MjpegServer]:
    """An HTTP MJPEG camera looping the small clip's first 10 frames at 25 fps, dropping each
    connection after 30 frames."""
    import itertools

    import av
    import cv2

    with av.open(str(small_clip)) as container:
        decoded = itertools.islice(container.decode(video=0), 10)
        frames = [f.to_ndarray(format="bgr24") for f in decoded]
    server = MjpegServer([cv2.imencode(".jpg", f)[1].tobytes() for f in frames])
    yield server
    server.close()


@pytest.fixture
def slow_label_embeddings(monkeypatch):
    """`slow(seconds)`: the run's label embeddings take that much longer, as a first run's do
    (the label set through the text tower, once per model)."""
    import streamer.pipeline

    embed = streamer.pipeline.cached_text_embeddings

    def slow(seconds: float) -> None:
        async def first_run(*args, **kwargs):
            await asyncio.sleep(seconds)
            return await embed(*args, **kwargs)

        monkeypatch.setattr(streamer.pipeline, "cached_text_embeddings", first_run)

    return slow
