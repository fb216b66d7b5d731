"""What travels between the pipeline and a decode worker: typed messages that survive pickling,
errors that keep their class, and anything else refused loudly on both sides."""

from __future__ import annotations

import asyncio
import logging
import pickle
import secrets
from fractions import Fraction

import pytest
from live_helpers import wait_until

from streamer.core.channel import Channel
from streamer.errors import SourceDecodeError, SourceError, SourceTimeout
from streamer.sources import NetworkSource, SourceStatus, open_source
from streamer.sources.info import VideoInfo
from streamer.sources.options import AnalysisSize, DecodePlan, SourceOptions
from streamer.sources.pool import wire
from streamer.sources.pool.parent import WorkerHandle
from streamer.sources.tap import TapState

INFO = VideoInfo(320, 180, Fraction(25), Fraction(1, 12800), 50, 2.0, 0.0, "h264", None)
REPORT = wire.SourceReport(
    SourceStatus("offline", 1700000000.5, 3, 120, 7, "rtsp://***@cam: connection refused"),
    INFO,
    error=wire.Failure("SourceTimeout", "no answer within 5 s"),
)
META = wire.FrameMeta(
    7, 0.28, 12.5, 3584, Fraction(1, 12800), (("full", 0, (180, 320, 3)),), dropped=2
)

MESSAGES = [
    wire.Open(1, wire.FileSpec("/videos/a.mp4", "a", live=False, paced=False), DecodePlan(), 8),
    wire.Open(
        2,
        wire.NetworkSpec("rtsp://u:pw@cam/1", "door", live=True, options=SourceOptions()),
        DecodePlan(full_frames=False, analysis=AnalysisSize(224), analyze_fps=2.0),
        4,
    ),
    wire.Ring(1, "streamer-1-abcd-1-1", 691200),
    wire.Free(1, 3),
    wire.Stop(1),
    wire.Close(1),
    wire.Quit(),
    wire.Ready(4242),
    wire.Log(logging.WARNING, "streamer.sources", "door: reconnect attempt 2 in 1.0 s"),
    wire.Need(1, 777600),
    wire.FrameReady(1, 3, META),
    wire.Status(2, REPORT),
    wire.Recorded(2, TapState("recording", None, 2, 1_000_000, "recordings/door/a.mp4", 0)),
    wire.End(1, wire.SourceReport(SourceStatus("ended", frames=50), INFO)),
    wire.Failed(1, "MemoryError: out of memory"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_survives_pickling(message):
    copy = pickle.loads(pickle.dumps(message))
    assert copy == message and type(copy) is type(message)


def test_a_packet_tap_travels_in_open_as_it_was(tmp_path):
    from streamer.archive.recordings import Recorder

    tap = Recorder(tmp_path, "door", segment_s=30)
    spec = wire.NetworkSpec("rtsp://cam/1", "door", live=True, options=SourceOptions())
    copy = pickle.loads(pickle.dumps(wire.Open(3, spec, DecodePlan(), 4, tap))).tap
    assert type(copy) is Recorder and copy is not tap
    assert (copy.root, copy.stream, copy.segment_s, copy.state) == (
        tmp_path, "door", 30.0, TapState(),
    )  # fmt: skip


def test_each_side_takes_only_its_own_messages():
    for message in MESSAGES:
        mine = isinstance(message, wire.ToWorker)
        assert mine != isinstance(message, wire.FromWorker)
        checked, refused = (wire.to_worker, wire.from_worker)[:: 1 if mine else -1]
        assert checked(message) is message
        with pytest.raises(TypeError, match="unknown message"):
            refused(message)


@pytest.mark.parametrize("stray", [("frame", 1, 3, None), "quit", None, INFO])
def test_anything_else_is_refused_with_what_it_was(stray):
    with pytest.raises(TypeError, match=rf"unknown message from a worker: {type(stray).__name__}"):
        wire.from_worker(stray)
    with pytest.raises(TypeError, match="unknown message from the pipeline"):
        wire.to_worker(stray)


def test_a_refused_message_does_not_show_a_urls_credentials():
    spec = wire.NetworkSpec("rtsp://u:secret@cam/1", "door", live=True, options=SourceOptions())
    with pytest.raises(TypeError) as refused:
        wire.from_worker(spec)
    assert "secret" not in str(refused.value) and "secret" not in repr(spec)


def test_errors_travel_with_their_class_and_a_files_stopping_point():
    timeout = wire.Failure.of(SourceTimeout("cam: no data for 5 s (stalled)"))
    assert timeout is not None
    again = pickle.loads(pickle.dumps(timeout)).error()
    assert type(again) is SourceTimeout and str(again) == "cam: no data for 5 s (stalled)"
    cut = wire.Failure.of(SourceDecodeError("a.mp4: ends early", frames=49, pts=1.92))
    assert cut is not None
    decode = pickle.loads(pickle.dumps(cut)).error()
    assert isinstance(decode, SourceDecodeError) and (decode.frames, decode.pts) == (49, 1.92)
    # A name that is no source error (a newer worker, a typo) comes back as a SourceError.
    assert type(wire.Failure("KeyError", "x").error()) is SourceError
    assert wire.Failure.of(None) is None


def test_the_pipelines_source_follows_its_copys_report_but_counts_its_own_frames():
    source = NetworkSource("rtsp://u:pw@cam/1")
    source.frame_delivered()
    REPORT.apply_to(source)
    assert source.status == SourceStatus(
        "offline", 1700000000.5, 3, 1, 7, "rtsp://***@cam: connection refused"
    )
    assert source.info == INFO
    assert type(source.error) is SourceTimeout


async def test_a_file_copys_report_carries_where_it_stopped(truncated_clip):
    copy = open_source(truncated_clip)
    channel = Channel(4)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(copy.run(channel, asyncio.Event()))
        async for _ in channel:
            pass
    report = pickle.loads(pickle.dumps(wire.SourceReport.of(copy)))
    here = open_source(truncated_clip)
    report.apply_to(here)
    assert here.status.state == "ended" and here.incomplete is not None
    assert str(here.incomplete) == str(copy.incomplete)
    assert here.incomplete.frames == copy.incomplete.frames


async def test_a_worker_leaves_loudly_on_a_message_it_does_not_know(caplog):
    caplog.set_level(logging.ERROR, logger="streamer.sources")
    prefix = f"streamer-test-{secrets.token_hex(4)}-"
    worker = WorkerHandle(0, prefix, asyncio.get_running_loop())
    try:
        await asyncio.to_thread(worker.wait_ready)
        worker.send(("open", 1, "a.mp4"))  # type: ignore[arg-type]  # the old, untyped kind
        await wait_until(lambda: not worker.alive, 10, "the worker leaves")
    finally:
        worker.send(wire.Quit())
        await asyncio.to_thread(worker.reap, 3.0)
    assert "unknown message from the pipeline: tuple" in caplog.text
