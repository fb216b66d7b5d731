"""The end-of-run lines the `streamer` command prints from a run's summary."""

from streamer.cli.run import _print_summary
from streamer.config import OutputConfig, RunConfig
from streamer.report import RunSummary, StreamSummary


def _summary(*streams: StreamSummary) -> RunSummary:
    return RunSummary(
        frames=sum(s.frames for s in streams), analysed=sum(s.analysed for s in streams),
        captions=0, wall_s=10.0, interrupted=True, incomplete=None, random_weights=False,
        loop_lag_max_s=0.0, streams=streams,
    )  # fmt: skip


def _config(*inputs: str) -> RunConfig:
    return RunConfig(input=inputs, outputs=OutputConfig(jsonl="{stream}.jsonl"))


def _stream(name: str, **counts: int) -> StreamSummary:
    return StreamSummary(
        name=name, frames=250, analysed=50, captions=0, dropped=0, latency_ms=(40.0, 60.0, 90.0),
        reconnects=0, state="online", error=None, **counts,
    )  # fmt: skip


def test_a_live_stream_with_damage_gets_its_line_and_a_note_naming_the_likely_cause(capsys):
    summary = _summary(_stream("door", damaged=17))
    _print_summary(summary, _config("rtsp://127.0.0.1/door"))
    lines = capsys.readouterr().err.splitlines()
    (line,) = [s for s in lines if s.startswith("streamer:   door:")]
    assert "0 reconnects, 17 damaged," in line
    (note,) = [s for s in lines if "note: door" in s]
    assert "door: 17 damaged (packets that did not decode or pictures decoded with errors)" in note
    assert "--rtsp-transport tcp" in note


def test_no_damage_no_note_and_a_file_keeps_its_own_note(capsys):
    summary = _summary(_stream("yard"), _stream("clip", damaged_packets=3, damaged=3))
    _print_summary(summary, _config("rtsp://127.0.0.1/yard", "clip.mp4"))
    lines = capsys.readouterr().err.splitlines()
    assert any(s.startswith("streamer:   yard:") and " 0 damaged," in s for s in lines)
    notes = [s for s in lines if "note:" in s]
    assert notes == [
        "streamer: note: clip: skipped 3 damaged packet(s) that did not decode; the frames "
        "around them were annotated"
    ]


def test_a_stream_that_never_delivered_shows_no_latency_rather_than_nan(capsys):
    never = StreamSummary(
        name="gate", frames=0, analysed=0, captions=0, dropped=0,
        latency_ms=(float("nan"),) * 3, reconnects=4, state="offline", error=None,
    )  # fmt: skip
    _print_summary(_summary(_stream("door"), never), _config("rtsp://h/door", "rtsp://h/gate"))
    lines = capsys.readouterr().err.splitlines()
    (line,) = [s for s in lines if s.startswith("streamer:   gate:")]
    assert "latency p50/p95/p99 -/-/- ms, offline" in line and "nan" not in line
    assert any("latency p50/p95/p99 40/60/90 ms" in s for s in lines)
