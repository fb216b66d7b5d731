import asyncio
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from streamer.core.channel import Channel
from streamer.errors import SourceNotFoundError, SourceOpenError
from streamer.outputs import VideoWriter
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
    # the last frame named as the outputs name it: its index from 0, its time
    last_index, last_pts = frames[-1][0], frames[-1][1]
    assert f"stopped after frame {last_index} (t={last_pts:.3f} s)" in str(source.incomplete)
    assert source.incomplete.pts == pytest.approx(last_pts)


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


async def test_of_two_video_streams_the_one_marked_default_is_read(tmp_path):
    """A file's second video stream is the one players show (marked default; the first is a
    small preview here): it is the one described and decoded, with the audio marked default."""
    path = tmp_path / "two.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=1",
         "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=1", "-f", "lavfi", "-i", "sine=d=1",
         "-f", "lavfi", "-i", "sine=d=1:sample_rate=8000", "-map", "0:v", "-map", "1:v",
         "-map", "3:a", "-map", "2:a", "-c:v", "libx264", "-c:a", "flac",
         "-disposition:v:0", "0", "-disposition:v:1", "default",
         "-disposition:a:0", "0", "-disposition:a:1", "default", str(path)],
        check=True,
    )  # fmt: skip
    info = probe_video(path)
    assert (info.width, info.height) == (320, 240)
    frames = await _read_all(open_source(path))
    assert len(frames) == 25 and {f[3] for f in frames} == {(240, 320, 3)}
    out = tmp_path / "out.mkv"  # the audio copied into an annotated video: the default one
    writer = VideoWriter(str(out), width=320, height=240, time_base=Fraction(1, 25),
                         rate=Fraction(25), audio_from=str(path))  # fmt: skip
    for i in range(25):
        writer.write(np.zeros((240, 320, 3), np.uint8), i)
    writer.close()
    with av.open(str(out)) as written:
        assert [a.sample_rate for a in written.streams.audio] == [44100]  # not the 8-kHz one


def test_an_mp4_cut_before_its_index_is_named_as_such(tmp_path, small_clip):
    """A plain MP4 keeps its index ('moov') at the end: cut short, FFmpeg finds no frame and
    says only "Invalid data found"; the message names the missing index and what to do."""
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(small_clip), "-c", "copy", str(whole)],
                   check=True)  # fmt: skip
    data = whole.read_bytes()
    assert data.rindex(b"moov") > data.index(b"mdat")  # the index written last
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceOpenError, match=r"without its index \(no 'moov' box\).*did not"):
        open_source(cut)
    with pytest.raises(SourceOpenError, match="not a readable video"):  # other damage: as was
        (tmp_path / "noise.mp4").write_bytes(b"\0\0\0\x18ftypisom" + bytes(range(256)) * 8)
        open_source(tmp_path / "noise.mp4")


@pytest.mark.parametrize(
    ("encode", "words"),
    [
        (["-vf", "tinterlace=4", "-flags", "+ildct+ilme"], "is interlaced"),
        (["-color_trc", "smpte2084", "-color_primaries", "bt2020", "-colorspace", "bt2020nc"],
         "HDR10/PQ high dynamic range"),
        (["-color_trc", "arib-std-b67", "-color_primaries", "bt2020"], "HLG high dynamic range"),
        ([], None),
    ],
    ids=["interlaced", "pq", "hlg", "progressive-sdr"],
)  # fmt: skip
async def test_video_read_as_it_is_though_it_needs_converting_says_so_once(
    tmp_path, small_clip, caplog, encode, words
):
    path = tmp_path / "in.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(small_clip), "-t", "0.5", "-an", *encode,
                    "-c:v", "libx264", str(path)], check=True)  # fmt: skip
    with caplog.at_level("WARNING", logger="streamer.sources"):
        frames = await _read_all(open_source(path))
    assert len(frames) > 5
    warned = [r.getMessage() for r in caplog.records if r.name == "streamer.sources"]
    if words is None:
        assert warned == []
    else:
        assert len(warned) == 1 and words in warned[0] and "first" in warned[0], warned


def test_a_folder_given_as_an_input_is_told_how_to_give_its_videos(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("b.mp4", "a.mp4", "notes.txt"):
        (folder / name).write_bytes(b"")
    with pytest.raises(SourceOpenError) as caught:
        probe_video(folder)
    message = str(caught.value)
    assert f"Fix: give its videos, each an input of its own: {folder / '*.mp4'}" in message
    assert "(it holds 2: a.mp4, b.mp4)" in message
    (folder / "c.mkv").write_bytes(b"")
    with pytest.raises(SourceOpenError, match=r": .*clips/\* \(it holds 3: a.mp4, b.mp4, c.mkv\)"):
        probe_video(folder)


def test_audio_with_only_a_cover_picture_is_refused_naming_the_picture(tmp_path):
    """An MP3 or M4A with album art has one "video" stream: a single still picture. Read as a
    video it gave one frame and a bogus "ends early: 1 of 361535 frames" (exit 3)."""
    cover, path = tmp_path / "cover.png", tmp_path / "song.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x64",
                    "-frames:v", "1", str(cover)], check=True)  # fmt: skip
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-i", str(cover),
                    "-map", "0:a", "-map", "1", "-c:v", "copy", "-disposition:v",
                    "attached_pic", str(path)], check=True)  # fmt: skip
    with pytest.raises(SourceOpenError, match=r"only a still cover picture.*Fix: .*-loop 1"):
        open_source(path)


async def test_a_file_still_being_written_ends_incomplete_not_done(tmp_path, small_clip):
    """A recording still being written was read to its end of the moment and reported done
    (exit 0) with a part of the video; now the file's growth while it was read is named."""
    whole = tmp_path / "whole.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(small_clip), "-c", "copy", str(whole)],
                   check=True)  # fmt: skip
    data = whole.read_bytes()
    growing = tmp_path / "growing.ts"
    growing.write_bytes(data[: len(data) // 2])
    source = open_source(growing)
    with growing.open("ab") as fh:  # the writer goes on after the file was opened
        fh.write(data[len(data) // 2 :])
    frames = await _read_all(source)
    assert source.incomplete is not None and source.incomplete.frames == len(frames)
    assert "grew while it was read" in str(source.incomplete)
    again = open_source(growing)
    await _read_all(again)
    assert again.incomplete is None


def _ts_with_keyframes_every(path, frames: int) -> list[tuple[float, int, bool]]:
    """A 4-s MPEG-TS of 160x120 at 25 fps, no B-frames; its packets as (pts, byte, key)."""
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=4",
                    "-c:v", "libx264", "-bf", "0", "-g", str(frames), "-f", "mpegts", str(path)],
                   check=True)  # fmt: skip
    shown = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                            "packet=pts_time,pos,flags", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = [line.split(",")[:3] for line in shown.split()]  # each line ends in a comma
    return [(float(pts), int(pos), "K" in flags) for pts, pos, flags in rows]


async def test_a_file_cut_between_keyframes_says_what_it_could_not_decode(tmp_path, caplog):
    whole = tmp_path / "whole.ts"
    packets = _ts_with_keyframes_every(whole, 40)  # keyframes at 0, 1.6 and 3.2 s
    cut_at = packets[45]  # five frames after the keyframe at 1.6 s: 1.4 s to the next
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole.read_bytes()[cut_at[1] // 188 * 188 :])  # at a TS packet
    with caplog.at_level("WARNING", logger="streamer.sources"):
        assert len(await _read_all(open_source(whole))) == 100
        assert [r for r in caplog.records if r.name == "streamer.sources"] == []
        source = open_source(cut)
        frames = await _read_all(source)
    # what decodes is the keyframe at 3.2 s and the frames after it, none lost in the middle
    assert len(frames) == 20 and frames[0][1] == pytest.approx(packets[80][0])
    assert source.incomplete is None
    (warned,) = [r.getMessage() for r in caplog.records if r.name == "streamer.sources"]
    late, shown = packets[80][0] - cut_at[0], packets[80][0] - source.info.origin
    assert f"first {late:.2f} s do not decode" in warned and "cut before a keyframe" in warned
    assert f"outputs start at t={shown:.2f} s" in warned, warned
    # the count the progress bar ends at is what decodes, not the container's count
    assert abs(source.info.frames - len(frames)) <= 2, source.info.frames


def test_the_progress_bar_of_a_cut_file_ends_at_what_decodes(tmp_path, capsys):
    from streamer.cli.main import main

    whole = tmp_path / "whole.ts"
    packets = _ts_with_keyframes_every(whole, 40)
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole.read_bytes()[packets[45][1] // 188 * 188 :])  # 20 frames decode
    assert main(["run", str(cut), "-o", str(tmp_path / "out.mp4"), "--weights", "random",
                 "--model", "tiny", "--no-llm", "--preset", "ultrafast"]) == 0  # fmt: skip
    bars = [line for line in capsys.readouterr().err.splitlines() if "% " in line]
    assert bars and "100.0% 20/20 frames" in bars[-1], bars
