"""Helpers for checking what the pipeline wrote: ffprobe, strict SRT/WebVTT and JSONL readers."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

_SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
_VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def ffprobe(path: str | Path, *extra: str) -> dict:
    """ffprobe's JSON for a file, with decoded frame counts (`nb_read_frames`); `extra`
    arguments (e.g. "-show_frames") go to ffprobe."""
    if shutil.which("ffprobe") is None:
        pytest.fail("ffprobe is missing: run `bash scripts/setup.sh --test` (installs ffmpeg)")
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            *extra,
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def video_stream(info: dict) -> dict:
    return next(s for s in info["streams"] if s["codec_type"] == "video")


def stream_types(info: dict) -> list[str]:
    return [s["codec_type"] for s in info["streams"]]


def _seconds(match: tuple[str, ...]) -> float:
    h, m, s, ms = (int(x) for x in match)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """Strictly parse SubRip: numbered cues from 1, well-formed times, end > start, monotonic."""
    cues = []
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    for number, block in enumerate(blocks, start=1):
        lines = block.strip("\n").split("\n")
        assert lines[0] == str(number), f"cue {number} is numbered {lines[0]!r}"
        times = re.fullmatch(f"{_SRT_TIME} --> {_SRT_TIME}", lines[1])
        assert times, f"bad SRT time line {lines[1]!r}"
        start, end = _seconds(times.groups()[:4]), _seconds(times.groups()[4:])
        body = "\n".join(lines[2:])
        assert body.strip(), f"cue {number} is empty"
        assert end > start, f"cue {number} ends before it starts"
        assert not cues or start >= cues[-1][0], "cues out of order"
        cues.append((start, end, body))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """Strictly parse WebVTT: header, well-formed times, end > start, monotonic."""
    assert text.startswith("WEBVTT"), "missing WEBVTT header"
    cues = []
    for block in [b for b in text.split("\n\n")[1:] if b.strip()]:
        lines = block.strip("\n").split("\n")
        timing = next(i for i, line in enumerate(lines) if "-->" in line)
        times = re.match(f"{_VTT_TIME} --> {_VTT_TIME}", lines[timing])
        assert times, f"bad VTT time line {lines[timing]!r}"
        start, end = _seconds(times.groups()[:4]), _seconds(times.groups()[4:])
        body = "\n".join(lines[timing + 1 :])
        assert body.strip() and end > start
        assert not cues or start >= cues[-1][0]
        cues.append((start, end, body))
    return cues


def read_jsonl(path: str | Path) -> list[dict]:
    """Every line must be one JSON object."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def same_records(ours: str | Path, theirs: str | Path, tolerance: float = 2e-4) -> None:
    """Assert two JSON Lines files hold the same records, numbers equal within `tolerance`.

    For runs whose frames reach the encoder in other batches (a replica killed, a shard
    restarted): a batch of another size can move an embedding by ~1e-7, enough to flip the
    fourth decimal a score is rounded to. Everything that is not a number must be equal.
    """
    a, b = read_jsonl(ours), read_jsonl(theirs)
    assert len(a) == len(b), (Path(ours).name, len(a), len(b))
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        _same(x, y, tolerance, f"{Path(ours).name} record {index}")


def _same(x, y, tolerance: float, where: str) -> None:
    if isinstance(x, float) or isinstance(y, float):
        assert abs(x - y) <= tolerance, (where, x, y)
    elif isinstance(x, dict) and isinstance(y, dict):
        assert x.keys() == y.keys(), (where, sorted(x), sorted(y))
        for key in x:
            _same(x[key], y[key], tolerance, f"{where}.{key}")
    elif isinstance(x, list) and isinstance(y, list):
        assert len(x) == len(y), (where, x, y)
        for index, (i, j) in enumerate(zip(x, y, strict=True)):
            _same(i, j, tolerance, f"{where}[{index}]")
    else:
        assert x == y, (where, x, y)


def damaged_copy(clip: Path, out: Path) -> Path:
    """`clip` with two 3000-byte runs in its middle overwritten by random bytes (seeded): a
    file whose packets there do not decode, the rest intact."""
    data = bytearray(clip.read_bytes())
    rng = random.Random(7)
    for offset in (len(data) // 2, len(data) // 2 + 40_000):
        data[offset : offset + 3000] = rng.randbytes(3000)
    out.write_bytes(bytes(data))
    return out


def damaged_in_places(
    clip: Path, out: Path, places: tuple[float, ...] = (0.3, 0.45, 0.6, 0.75)
) -> Path:
    """`clip` with 6000 bytes overwritten by 0xFF at each of `places` (fractions of its size):
    several packets in its middle that do not decode (more frames lost than a container's
    rounding), its end intact."""
    data = bytearray(clip.read_bytes())
    for place in places:
        offset = int(len(data) * place)
        data[offset : offset + 6000] = b"\xff" * 6000
    out.write_bytes(bytes(data))
    return out


def at_resize_size(frames: list, cfg) -> list:
    """The frames as the pipeline hands them over: scaled to the encoder's resize size (PIL,
    bicubic), so a backend and torch get the same pixels."""
    import numpy as np
    import PIL.Image

    from encoders.preprocess import resized_shape

    out = []
    for frame in frames:
        height, width = resized_shape(frame.shape[0], frame.shape[1], cfg)
        image = PIL.Image.fromarray(frame).resize((width, height), PIL.Image.Resampling.BICUBIC)
        out.append(np.asarray(image))
    return out
