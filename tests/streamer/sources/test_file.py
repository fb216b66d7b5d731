import asyncio
import subprocess

import pytest

from streamer.core.channel import Channel
from streamer.errors import SourceNotFoundError, SourceOpenError
from streamer.sources import open_source, probe_video


async def _read_all(source, capacity=4, stop=None):
    ch = Channel(capacity)
    frames = []
    async with asyncio.TaskGroup() as tg:
        tg.create_task(source.run(ch, stop or asyncio.Event()))
        async for f in ch:
            frames.append((f.index, f.pts, f.pts_raw, f.image.shape, f.image.dtype))
    return frames


def test_probe_reads_the_real_clip(sample_clip):
    info = probe_video(sample_clip)
    assert (info.width, info.height, info.fps, info.frames) == (1280, 720, 25, 132)
    assert info.codec == "h264" and info.audio == "aac"
    assert info.duration == pytest.approx(5.28, abs=0.05)


async def test_every_frame_in_order_with_media_times(sample_clip):
    frames = await _read_all(open_source(sample_clip))
    assert len(frames) == 132
    assert [f[0] for f in frames] == list(range(132))
    assert frames[1][1] == pytest.approx(0.04)
    assert frames[-1][1] == pytest.approx(131 / 25)
    assert frames[0][3] == (720, 1280, 3) and str(frames[0][4]) == "uint8"


async def test_stop_ends_the_source_early_and_closes_the_channel(sample_clip):
    stop = asyncio.Event()
    ch = Channel(2)
    source = open_source(sample_clip)
    got = 0
    async with asyncio.TaskGroup() as tg:
        tg.create_task(source.run(ch, stop))
        async for _ in ch:
            got += 1
            if got == 5:
                stop.set()
    assert 5 <= got < 20 and ch.closed


async def test_truncated_file_delivers_what_decodes_and_says_where_it_stopped(truncated_clip):
    source = open_source(truncated_clip)
    frames = await _read_all(source)
    assert 10 < len(frames) < 132
    assert source.incomplete is not None
    assert source.incomplete.frames == len(frames)
    assert f"{len(frames)} of 132 frames" in str(source.incomplete)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda p: None, SourceNotFoundError, "does not exist"),
        (lambda p: p.write_bytes(b""), SourceOpenError, r"empty \(0 bytes\)"),
        (lambda p: p.write_bytes(bytes(range(256)) * 40), SourceOpenError, "not a readable video"),
        (lambda p: p.mkdir(), SourceOpenError, "is a folder"),
    ],
    ids=["missing", "zero-bytes", "random-bytes", "folder"],
)
def test_bad_inputs_fail_at_open_with_the_reason(tmp_path, make, error, words):
    path = tmp_path / "input.mp4"
    make(path)
    with pytest.raises(error, match=words):
        open_source(path)


def test_audio_only_file_is_refused_naming_what_it_holds(tmp_path):
    path = tmp_path / "tone.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", str(path)], check=True
    )
    with pytest.raises(SourceOpenError, match=r"no video stream.*audio"):
        open_source(path)
