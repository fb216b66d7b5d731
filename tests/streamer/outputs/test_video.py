"""VideoWriter: real MP4s written through PyAV, checked with ffprobe."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import numpy as np
import pytest

from streamer.outputs import SinkError, SinkOpenError, VideoWriter

TB25 = Fraction(1, 25)


def _image(i: int, height: int = 120, width: int = 160) -> np.ndarray:
    """A frame that changes every time, so the encoder cannot skip anything."""
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (np.arange(width) * 2 + i * 7) % 256
    image[..., 1] = (i * 31) % 256
    return image


def _video(info: dict) -> dict:
    return next(s for s in info["streams"] if s["codec_type"] == "video")


def _write(path, n: int, **kwargs) -> VideoWriter:
    writer = VideoWriter(
        str(path), width=160, height=120, time_base=TB25, rate=Fraction(25), **kwargs
    )
    for i in range(n):
        writer.write(_image(i), i)
    return writer


@pytest.mark.integration
def test_writes_h264_mp4_with_every_frame(tmp_path, probe):
    path = tmp_path / "out.mp4"
    writer = _write(path, 25)
    writer.close()

    info = probe(path)
    video = _video(info)
    assert writer.frames_written == 25
    assert video["codec_name"] == "h264"
    assert (video["width"], video["height"]) == (160, 120)
    assert int(video["nb_read_frames"]) == 25
    assert float(info["format"]["duration"]) == pytest.approx(1.0, abs=0.001)
    assert video["color_space"] == "bt709"


@pytest.mark.integration
def test_each_frame_keeps_its_own_colours(tmp_path):
    """The writer reuses one colour converter for every frame: each frame must still come
    back as it was written (BT.709, TV range), not as its neighbour or a shared buffer."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 240), (16, 16, 16)]
    path = tmp_path / "colours.mp4"
    writer = VideoWriter(str(path), width=64, height=48, time_base=TB25, rate=Fraction(25),
                         crf=0)  # fmt: skip
    for i, colour in enumerate(colours * 3):
        writer.write(np.full((48, 64, 3), colour, np.uint8), i)
    writer.close()

    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 15
    for i, image in enumerate(decoded):
        mean = image.reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - colours[i % 5]).max() < 4, (i, mean)


@pytest.mark.integration
def test_variable_frame_rate_timestamps_are_kept(tmp_path, probe):
    tb = Fraction(1, 90000)
    pts = [0, 3000, 6000, 15000, 16000, 45000, 48000, 90000]
    path = tmp_path / "vfr.mp4"
    with VideoWriter(str(path), width=160, height=120, time_base=tb, rate=None) as writer:
        for i, p in enumerate(pts):
            writer.write(_image(i), p)

    info = probe(path, "-show_frames")
    times = [float(f["pts_time"]) for f in info["frames"]]
    assert times == pytest.approx([float(p * tb) for p in pts], abs=1e-5)
    # The last frame lasts as long as the one before it (no nominal rate was given).
    assert float(info["format"]["duration"]) == pytest.approx(1 + 42000 / 90000, abs=0.002)


@pytest.mark.parametrize(("pts", "warned"), [([0, 40, 40, 80], False), ([0, 80, 40, 120], True)],
                         ids=["same-tick", "backwards"])  # fmt: skip
def test_a_repeated_tick_is_moved_quietly_and_a_step_back_with_a_warning(
    tmp_path, probe, caplog, pts, warned
):
    # A live stream's frames are timed in milliseconds: two decoded within one are no news.
    caplog.set_level(logging.DEBUG)
    tb = Fraction(1, 1000)
    path = tmp_path / "ticks.mp4"
    with VideoWriter(str(path), width=160, height=120, time_base=tb, rate=None) as writer:
        for i, p in enumerate(pts):
            writer.write(_image(i), p)
    times = [float(f["pts_time"]) for f in probe(path, "-show_frames")["frames"]]
    assert len(times) == 4 and times == sorted(set(times))  # every frame, in order
    said = [r for r in caplog.records if "does not increase" in r.getMessage()]
    assert len(said) == 1 and (said[0].levelno == logging.WARNING) is warned


def _copy_through(source, path, **kwargs) -> list[float]:
    """Write every frame of the 320x240 `source` to `path` with its timestamps and audio (a
    `VideoWriter` with `kwargs`); return the frames' times in seconds."""
    times = []
    with av.open(str(source)) as inp:
        stream = inp.streams.video[0]
        writer = VideoWriter(
            str(path), width=320, height=240, time_base=stream.time_base,
            rate=stream.average_rate, audio_from=str(source), **kwargs,
        )  # fmt: skip
        for frame in inp.decode(stream):
            writer.write(frame.to_ndarray(format="rgb24"), frame.pts)
            times.append(float(frame.pts * frame.time_base))
    writer.close()
    return times


@pytest.mark.integration
def test_copies_frames_and_audio_from_an_input(tmp_path, probe, make_clip):
    source = make_clip("in.mp4")
    path = tmp_path / "out.mp4"
    _copy_through(source, path)

    expected, got = probe(source), probe(path)
    assert [s["codec_type"] for s in got["streams"]] == ["video", "audio"]
    for want, have in zip(expected["streams"], got["streams"], strict=True):
        assert have["codec_name"] == want["codec_name"]
        assert have["nb_read_frames"] == want["nb_read_frames"]
        assert float(have["duration"]) == pytest.approx(float(want["duration"]), abs=0.03)
    assert float(got["format"]["duration"]) == pytest.approx(2.0, abs=0.03)


@pytest.mark.integration
@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "fragmented"])
def test_frames_keep_the_input_times_beside_the_audio(tmp_path, make_clip, fragmented):
    """x264's B-frames start the decode two frames before the first picture: the output's
    frames still come at the input's times, and its audio where the input's is (a fragmented
    MP4 played its whole video 80 ms late)."""
    source = make_clip("in.mp4")
    path = tmp_path / "out.mp4"
    times = _copy_through(source, path, fragmented=fragmented)
    with av.open(str(source)) as inp:
        audio_start = float(inp.streams.audio[0].start_time * inp.streams.audio[0].time_base)
    with av.open(str(path)) as out:
        got = [float(f.pts * f.time_base) for f in out.decode(video=0)]
        audio = out.streams.audio[0]
        assert float(audio.start_time * audio.time_base) == pytest.approx(audio_start, abs=0.025)
    assert got == pytest.approx(times, abs=0.001)


@pytest.mark.integration
def test_audio_stops_with_the_video(tmp_path, probe, make_clip):
    source = make_clip("in.mp4")
    path = tmp_path / "half.mp4"
    writer = VideoWriter(
        str(path), width=160, height=120, time_base=TB25, rate=Fraction(25), audio_from=str(source)
    )
    for i in range(25):  # 1 s of the 2 s input
        writer.write(_image(i), i)
    writer.close()

    streams = probe(path)["streams"]
    assert [s["codec_type"] for s in streams] == ["video", "audio"]
    assert float(streams[1]["duration"]) == pytest.approx(1.0, abs=0.03)


@pytest.mark.integration
def test_audio_the_container_refuses_is_dropped_with_a_warning(tmp_path, probe, make_clip, caplog):
    source = make_clip("mulaw.mkv", audio_codec="pcm_mulaw")
    path = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING, logger="streamer.outputs.video"):
        writer = _write(path, 10, audio_from=str(source))
        writer.close()

    assert "pcm_mulaw" in caplog.text
    assert "write to .mkv, or convert the input's audio first: `ffmpeg" in caplog.text  # fixes
    info = probe(path)
    assert [s["codec_type"] for s in info["streams"]] == ["video"]
    assert int(_video(info)["nb_read_frames"]) == 10


@pytest.mark.integration
def test_pcm_audio_into_mp4_is_kept_with_a_warning_naming_mov_and_mkv(
    tmp_path, probe, make_clip, caplog
):
    source = make_clip("pcm.mov", audio_codec="pcm_s24le")
    with caplog.at_level(logging.WARNING, logger="streamer.outputs.video"):
        _write(tmp_path / "out.mp4", 10, audio_from=str(source)).close()
        _write(tmp_path / "out.mov", 10, audio_from=str(source)).close()  # no warning
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "'ipcm'" in warned[0] and ".mov or .mkv" in warned[0]
    types = [s["codec_type"] for s in probe(tmp_path / "out.mp4")["streams"]]
    assert types == ["video", "audio"]  # kept


@pytest.mark.integration
def test_input_without_audio_writes_video_only(tmp_path, probe, make_clip):
    source = make_clip("silent.mp4", audio_codec=None, seconds=0.4)
    path = tmp_path / "out.mp4"
    _write(path, 5, audio_from=str(source)).close()
    assert [s["codec_type"] for s in probe(path)["streams"]] == ["video"]


@pytest.mark.integration
def test_odd_size_is_padded_with_one_warning(tmp_path, probe, caplog):
    path = tmp_path / "odd.mp4"
    with caplog.at_level(logging.WARNING, logger="streamer.outputs.video"):
        writer = VideoWriter(str(path), width=63, height=47, time_base=TB25, rate=Fraction(25))
        for i in range(5):
            writer.write(_image(i, 47, 63), i)
        writer.close()

    assert caplog.text.count("odd frame size 63x47") == 1
    video = _video(probe(path))
    assert (video["width"], video["height"]) == (64, 48)
    assert int(video["nb_read_frames"]) == 5
    with av.open(str(path)) as inp:
        first = next(inp.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    # The added column and row copy their neighbours instead of being black.
    assert np.abs(first[:, 63] - first[:, 62]).max() <= 8
    assert np.abs(first[47] - first[46]).max() <= 8


@pytest.mark.parametrize("name", ["missing-dir/out.mp4", "out.no-such-format", "out.webm"])
def test_unwritable_output_fails_at_construction(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(SinkOpenError, match="cannot open video output") as caught:
        VideoWriter(str(path), width=64, height=48, time_base=TB25, rate=Fraction(25))
    assert str(path) in str(caught.value)
    assert caught.value.__cause__ is not None
    assert isinstance(caught.value, OSError)
    if name.endswith(".webm"):  # a container that takes no H.264: the fix named
        assert "to a .mp4, .mkv or .mov file" in str(caught.value)
    assert not path.exists()


@pytest.mark.integration
def test_interrupted_run_leaves_a_playable_file(tmp_path, probe):
    path = tmp_path / "interrupted.mp4"
    with (
        pytest.raises(KeyboardInterrupt),
        VideoWriter(str(path), width=160, height=120, time_base=TB25, rate=Fraction(25)) as writer,
    ):
        for i in range(100):
            if i == 17:
                raise KeyboardInterrupt
            writer.write(_image(i), i)
    writer.close()  # a second close does nothing

    info = probe(path)
    assert int(_video(info)["nb_read_frames"]) == 17
    assert float(info["format"]["duration"]) == pytest.approx(17 / 25, abs=0.001)


@pytest.mark.integration
def test_close_after_a_failed_write_keeps_earlier_frames(tmp_path, probe):
    path = tmp_path / "bad-frame.mp4"
    writer = _write(path, 8)
    with pytest.raises(ValueError, match="must be a 120×160×3 uint8"):
        writer.write(np.zeros((10, 10, 3), np.uint8), 8)
    writer.close()
    assert int(_video(probe(path))["nb_read_frames"]) == 8
    with pytest.raises(SinkError, match="closed"):
        writer.write(_image(9), 9)


@pytest.mark.integration
def test_non_increasing_timestamps_keep_every_frame(tmp_path, probe):
    path = tmp_path / "dup.mp4"
    with VideoWriter(str(path), width=160, height=120, time_base=TB25, rate=Fraction(25)) as w:
        for i, pts in enumerate([0, 1, 1, 2, 5]):
            w.write(_image(i), pts)
    times = [float(f["pts_time"]) for f in probe(path, "-show_frames")["frames"]]
    assert times == pytest.approx([0, 0.04, 0.08, 0.12, 0.2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0}, "`width` must be a positive integer, got 0"),
        ({"height": 12.5}, "`height` must be a positive integer, got 12.5"),
        ({"time_base": Fraction(0)}, "`time_base` must be a positive fraction"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    args = {"width": 64, "height": 48, "time_base": TB25, "rate": None} | kwargs
    with pytest.raises(ValueError, match=message):
        VideoWriter(str(tmp_path / "x.mp4"), **args)
    assert not (tmp_path / "x.mp4").exists()
