"""The packet tap (`streamer.sources.tap`): live network sources hand their compressed packets
to a sink, on the decode thread, connection by connection, in this process or in a decode
worker; sources without packets refuse a tap; a codec MP4 cannot hold is declined. Against
the real RTSP server, a real MJPEG camera over HTTP and the real recorder."""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from live_helpers import FAST, Running, StaticServer, wait_until

from streamer.archive._segments import CATALOGUE_LOCK, WRITER_LOCK
from streamer.archive.recordings import Recorder, segments
from streamer.core.channel import Channel, DropPolicy
from streamer.core.frame import Frame
from streamer.errors import ConfigError
from streamer.sources import CameraSource, SourceRunner, open_source
from streamer.sources.options import DecodePlan
from streamer.sources.pool import decoding
from streamer.sources.tap import PacketSink, PacketTap, TapConnection, TapState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


class _Collect:
    """A tap whose sink keeps what it is given (in this process only: it does not pickle
    across to a worker, which imports only the package)."""

    def __init__(self, take: bool = True) -> None:
        self.take = take
        self.state = TapState()
        self.connections: list[tuple[str, int, int, str | None]] = []
        self.packets: list[tuple[int, bool, int]] = []
        self.threads: set[str] = set()
        self.stops = 0
        self.closed = 0

    def sink(self) -> PacketSink:
        return self

    def follow(self, state: TapState) -> None:
        self.state = state

    def start(self, connection: TapConnection) -> bool:
        self.threads.add(threading.current_thread().name)
        audio = connection.audio.codec_context.name if connection.audio is not None else None
        video = connection.video
        self.connections.append((connection.info.codec, video.index, video.width, audio))
        return self.take

    def packet(self, packet) -> None:
        self.threads.add(threading.current_thread().name)
        self.packets.append((packet.stream_index, packet.is_keyframe, packet.size))

    def stop(self) -> None:
        self.stops += 1

    def close(self) -> None:
        self.closed += 1


class _Tapped:
    """A runner that runs sources through `runner` with `tap` (for `Running`)."""

    def __init__(self, runner: SourceRunner, tap: PacketTap) -> None:
        self.runner, self.tap = runner, tap

    def run(self, source, out, stop):
        return self.runner.run(source, out, stop, self.tap)


async def test_a_network_source_hands_each_video_packet_to_the_sink_on_its_decode_thread(
    rtsp_server,
):
    source = open_source(rtsp_server.url("cam1"), "tapped", options=FAST)
    assert source.tappable
    tap = _Collect()
    async with Running(source, capacity=64, runner=_Tapped(SourceRunner(DecodePlan()), tap)) as run:
        await run.until(lambda: len(run.frames) >= 50, 20, "50 frames")
    assert tap.connections == [("h264", 0, 320, None)]  # the pattern has no audio
    assert tap.stops == 1 and tap.closed == 1  # the connection ended, then the run
    assert tap.threads == {"source:tapped"}  # the decode thread: no hop on the way
    video = [p for p in tap.packets if p[0] == 0]
    assert len(video) == len(tap.packets) and all(size > 0 for _, _, size in video)
    # One packet a picture (H.264 without B-frames), each tapped as its picture is decoded.
    assert abs(len(video) - source.status.frames) <= 2, (len(video), source.status.frames)
    keys = [i for i, (_, key, _) in enumerate(video) if key]
    assert len(keys) >= 2 and all(b - a == 25 for a, b in itertools.pairwise(keys))


async def test_a_declined_connection_sends_no_packets_and_frames_flow_on(rtsp_server):
    source = open_source(rtsp_server.url("cam1"), options=FAST)
    tap = _Collect(take=False)
    async with Running(source, runner=_Tapped(SourceRunner(DecodePlan()), tap)) as run:
        await run.until(lambda: len(run.frames) >= 10, 20, "10 frames")
    assert len(tap.connections) == 1 and tap.packets == [] and tap.closed == 1


async def test_sources_without_packets_refuse_a_tap_that_cannot_encode(sample_clip):
    tap = _Collect()  # a packet sink only: no `start_frames`, no `frame`
    file = open_source(sample_clip)
    assert not file.tappable and not CameraSource(0).tappable
    runs = [
        SourceRunner(DecodePlan()).run(file, _channel(), asyncio.Event(), tap),
        CameraSource("/dev/video-none", options=FAST).run(
            _channel(), asyncio.Event(), DecodePlan(), tap
        ),
    ]
    for run in runs:
        async with asyncio.timeout(5):  # refused before anything opens
            with pytest.raises(ConfigError, match="record it by encoding its frames"):
                await run
    # The file never made the sink; the camera made it to see that it cannot encode, and closed it.
    assert tap.connections == [] and tap.closed == 1


def _channel() -> Channel[Frame]:
    return Channel(4, DropPolicy.DROP_OLDEST)


def _lock_holder(path: Path) -> int | None:
    """The process holding a `flock` on `path`, from the kernel's table of locks."""
    inode = path.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and fields[-3].endswith(f":{inode}"):
            return int(fields[-4])
    return None


async def test_an_mjpeg_camera_is_declined_so_it_can_be_encoded_instead(mjpeg_server, tmp_path):
    source = open_source(mjpeg_server.url(), "mjpeg", options=FAST)
    tap = _Collect(take=False)  # a packet sink that declines: nothing else happens
    async with Running(source, runner=_Tapped(SourceRunner(DecodePlan()), tap)) as run:
        await run.until(lambda: len(run.frames) >= 10, 20, "10 frames")
    assert tap.connections[0][0] == "mjpeg" and tap.packets == []
    # The recorder declines the packets and takes the frames instead, to encode them.
    recorder = Recorder(tmp_path, "mjpeg")
    source = open_source(mjpeg_server.url(), "mjpeg", options=FAST)
    async with Running(source, runner=_Tapped(SourceRunner(DecodePlan()), recorder)) as run:
        await run.until(lambda: recorder.state.state == "recording", 20, "recording")
        assert recorder.state.mode == "encode" and recorder.state.detail is None
    assert segments(tmp_path) and all(s.encoded == "mjpeg" for s in segments(tmp_path))


async def test_audio_is_tapped_with_the_video_when_the_stream_has_it(hls_server, tmp_path, probe):
    # The small clip over HTTP (H.264 + AAC), read as a live stream.
    source = open_source(hls_server.url("small.mp4"), "remote", live=True, options=FAST)
    tap = _Collect()
    async with Running(source, runner=_Tapped(SourceRunner(DecodePlan()), tap)) as run:
        await run.ended(20)
    assert tap.connections == [("h264", 0, 320, "aac")]
    kinds = {index for index, _, _ in tap.packets}
    assert kinds == {0, 1}
    # The real recorder copies both into its segment.
    recorder = Recorder(tmp_path, "remote", segment_s=60)
    source = open_source(hls_server.url("small.mp4"), "remote", live=True, options=FAST)
    async with Running(source, runner=_Tapped(SourceRunner(DecodePlan()), recorder)) as run:
        await run.ended(20)
    (segment,) = segments(tmp_path)
    info = probe(tmp_path / segment.path)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    assert segment.audio == "aac" and segment.complete


async def test_hls_with_aac_in_adts_frames_is_recorded_with_its_audio(sample_clip, tmp_path, probe):
    # MPEG-TS carries AAC in ADTS frames, without the configuration MP4 wants in its header.
    folder = tmp_path / "hls"
    folder.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(sample_clip), "-t", "3", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-f", "hls", "-hls_time",
                    "1", "-hls_playlist_type", "vod", str(folder / "index.m3u8")],
                   check=True)  # fmt: skip
    server = StaticServer(folder)
    try:
        source = open_source(server.url("index.m3u8"), "hls", options=FAST)
        recorder = Recorder(tmp_path, "hls", segment_s=60)
        async with Running(source, runner=_Tapped(SourceRunner(DecodePlan()), recorder)) as run:
            await run.ended(30)
    finally:
        server.close()
    assert recorder.state.state == "closed" and recorder.state.detail is None
    (segment,) = segments(tmp_path)
    streams = {s["codec_name"]: s for s in probe(tmp_path / segment.path)["streams"]}
    assert set(streams) == {"h264", "aac"} and segment.audio == "aac"
    assert int(streams["h264"]["nb_read_frames"]) == segment.frames == 75
    # Every audio frame decodes: 3 s of 48 kHz AAC is about 141 frames of 1024 samples.
    assert int(streams["aac"]["nb_read_frames"]) >= 135
    assert float(streams["aac"]["duration"]) == pytest.approx(3.0, abs=0.1)


@pytest.mark.slow
async def test_recording_in_a_decode_worker_writes_there_and_the_state_follows(
    rtsp_server, tmp_path, probe
):
    source = open_source(rtsp_server.url("cam2"), "pooled", options=FAST)
    recorder = Recorder(tmp_path, "pooled", segment_s=1.5)
    seen: set[str] = set()
    async with decoding([source], DecodePlan(), workers=1) as runner:
        assert runner.in_worker(source)
        async with Running(source, capacity=64, runner=_Tapped(runner, recorder)) as run:
            await run.until(lambda: len(run.frames) >= 90, 30, "90 frames")
            await wait_until(lambda: recorder.state.files >= 2, 10, "a second segment")
            seen.add(recorder.state.state)
            # The worker records: it holds the stream's writer lock, this process does not.
            writer = _lock_holder(tmp_path / "recordings" / "pooled" / WRITER_LOCK)
            assert writer == runner.pool.pids[0] and writer != os.getpid()
    assert seen == {"recording"} and recorder.state.state == "closed"
    found = segments(tmp_path, "pooled")
    assert len(found) >= 2 and all(s.complete for s in found)
    assert recorder.state.files == len(found)
    assert recorder.state.bytes == sum(s.bytes for s in found)
    for segment in found:
        assert probe(tmp_path / segment.path)["streams"][0]["nb_read_frames"] == str(segment.frames)


@pytest.mark.slow
async def test_a_stalled_disk_never_holds_up_decoding(rtsp_server, tmp_path):
    """The writer thread is blocked (the catalogue's lock held, as a stalled disk would):
    frames keep coming at the stream's rate, and the queued packets are written after."""
    source = open_source(rtsp_server.url("cam1"), "stalled", options=FAST)
    recorder = Recorder(tmp_path, "stalled", segment_s=60)
    folder = tmp_path / "recordings" / "stalled"
    folder.mkdir(parents=True)
    lock = os.open(folder / CATALOGUE_LOCK, os.O_RDWR | os.O_CREAT)
    runner = _Tapped(SourceRunner(DecodePlan()), recorder)
    try:
        async with Running(source, capacity=256, runner=runner) as run:
            await run.until(lambda: len(run.frames) >= 10, 20, "10 frames")
            fcntl.flock(lock, fcntl.LOCK_EX)  # the writer now blocks at its next catalogue line
            await asyncio.sleep(0.5)
            before, started = len(run.frames), time.monotonic()
            await asyncio.sleep(3.0)
            rate = (len(run.frames) - before) / (time.monotonic() - started)
            assert recorder.state.state == "waiting"  # its first segment cannot start
            fcntl.flock(lock, fcntl.LOCK_UN)
            await wait_until(lambda: recorder.state.state == "recording", 10, "recording")
            delivered = source.status.frames
    finally:
        os.close(lock)
    assert rate >= 25 * 0.8, f"{rate:.1f} frames/s while the writer was stalled"
    (segment,) = segments(tmp_path)
    # The packets queued while it was stalled went into the segment (from its first key
    # frame, within a second of the first frame delivered).
    assert segment.frames >= delivered - 25 - 5 and recorder.state.dropped == 0
