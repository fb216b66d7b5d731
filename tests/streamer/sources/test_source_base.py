"""The `Source` protocol: every kind of source has what the pipeline reads from the moment it is
made (before a network source connects, before a camera is opened), and a file's status says
how far it got."""

from __future__ import annotations

import asyncio
import typing

import pytest

from streamer.core.channel import Channel
from streamer.sources import CameraSource, NetworkSource, Source, SourceStatus, open_source

# Every attribute the protocol promises (its methods aside).
PROMISED = sorted(typing.get_type_hints(Source))


class NoCamera:
    """A `capture_factory` that records whether a camera was opened."""

    def __init__(self) -> None:
        self.opened: list[object] = []

    def __call__(self, device: object) -> object:
        self.opened.append(device)
        raise AssertionError("a camera must not be opened before its source runs")


def test_the_protocol_promises_what_the_pipeline_reads():
    assert PROMISED == [
        "connects", "incomplete", "info", "live", "name", "path", "status", "tappable",
    ]  # fmt: skip


def test_a_file_has_everything_from_construction(small_clip):
    source = open_source(small_clip)
    assert {name: hasattr(source, name) for name in PROMISED} == dict.fromkeys(PROMISED, True)
    assert (source.name, source.live, source.connects) == ("small", False, False)
    assert not source.tappable  # a file is never copied: an archive refers to it
    assert source.path == str(small_clip)
    assert source.info is not None and (source.info.width, source.info.height) == (320, 180)
    assert source.status == SourceStatus(state="playing")
    assert source.incomplete is None and not source.status.finished


def test_a_network_source_has_everything_before_it_connects():
    source = NetworkSource("rtsp://admin:secret@10.0.0.7/stream1")
    assert {name: hasattr(source, name) for name in PROMISED} == dict.fromkeys(PROMISED, True)
    assert (source.name, source.live, source.connects) == ("10.0.0.7_stream1", True, True)
    assert source.tappable  # its packets can be recorded as they come
    assert source.path is None and source.info is None and source.incomplete is None
    assert source.status == SourceStatus(state="connecting")
    remote_file = NetworkSource("https://example.org/media/clip.mp4")
    assert (remote_file.live, remote_file.connects) == (False, True)


def test_a_camera_has_everything_before_it_is_opened():
    cameras = NoCamera()
    source = CameraSource("/dev/video4", capture_factory=cameras)
    assert {name: hasattr(source, name) for name in PROMISED} == dict.fromkeys(PROMISED, True)
    assert (source.name, source.live, source.connects) == ("cam4", True, True)
    assert not source.tappable  # OpenCV gives pictures, not packets
    assert source.path is None and source.info is None and source.incomplete is None
    assert source.status == SourceStatus(state="connecting")
    assert cameras.opened == []


def test_the_contract_is_chosen_when_the_source_is_made(small_clip):
    played_live = open_source(small_clip, live=True)
    assert played_live.live and played_live.paced  # a file played as a camera keeps its pace
    assert not open_source(small_clip).paced
    assert open_source("0", live=False).live is False


async def _read(source, stop_after: int | None = None) -> int:
    channel = Channel(4)
    stop = asyncio.Event()
    got = 0
    async with asyncio.TaskGroup() as tg:
        tg.create_task(source.run(channel, stop))
        async for _ in channel:
            got += 1
            if got == stop_after:
                stop.set()
    return got


async def test_a_file_read_to_its_end_has_ended(small_clip):
    source = open_source(small_clip)
    frames = await _read(source)
    assert frames == 50
    assert source.status.state == "ended" and source.status.finished
    assert source.status.frames == 50 and source.status.damaged == 0
    assert source.incomplete is None


async def test_a_stopped_file_is_still_playing(long_clip):
    source = open_source(long_clip)
    frames = await _read(source, stop_after=5)
    assert 5 <= frames < 100
    assert source.status.state == "playing" and not source.status.finished


async def test_a_truncated_file_ends_incomplete(truncated_clip):
    source = open_source(truncated_clip)
    frames = await _read(source)
    assert source.status.state == "ended"
    assert source.incomplete is not None and source.incomplete.frames == frames


@pytest.mark.parametrize("state", ["ended", "failed"])
def test_finished_means_the_source_will_deliver_no_more(state):
    assert SourceStatus(state=state).finished
    assert not SourceStatus(state="offline").finished
