"""`/metrics` as Prometheus reads it: the exposition parsed by prometheus_client's own parser."""

import time
from types import SimpleNamespace

import aiohttp
import pytest
from media import damaged_copy
from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from web_helpers import run_and_check

from streamer import CaptionPolicy, OutputConfig, RunConfig
from streamer.config import ServeConfig
from streamer.core.stats import Histogram
from streamer.llm import LlmConfig
from streamer.watch.web import WebViewer
from streamer.watch.web.metrics import encoder_counters, metrics_registry, render_metrics


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(family, name: str, **labels) -> float:
    for sample in family.samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no sample {name}{labels} in {family.samples}")


def _stream(name: str, latencies=(0.05, 0.1, 0.5, 3.0), **status) -> SimpleNamespace:
    """A stream as the collector reads it: its stats, drops and (live) source status."""
    histogram = Histogram((0.1, 1.0))
    for value in latencies:
        histogram.observe(value)
    stats = SimpleNamespace(decoded=10, analysed=4, delivered=9, captions=2, caption_timeouts=0,
                            latency=SimpleNamespace(histogram=histogram))  # fmt: skip
    state = {"state": "online", "reconnects": 0, "offline_since": None, "damaged": 0, **status}
    return SimpleNamespace(name=name, node="cam-host", stats=stats, dropped=1,
                           source=SimpleNamespace(status=SimpleNamespace(**state)))  # fmt: skip


def _run(*streams, batch_sizes=None) -> SimpleNamespace:
    load = SimpleNamespace(batches=4, images=12, busy_s=0.5, batch_sizes=batch_sizes or {})
    encoder = SimpleNamespace(load=lambda: load)  # the encoder service's load report
    return SimpleNamespace(streams=list(streams), client=None, encoder=encoder,
                           started=time.monotonic())  # fmt: skip


def test_label_values_are_escaped_so_the_parser_reads_them_back():
    odd = 'cam "front"\\yard\nnorth'
    text = render_metrics(_run(_stream(odd, state="offline", offline_since=1718000000.5)))
    families = _families(text)
    assert _value(families["streamer_frames_decoded"], "streamer_frames_decoded_total",
                  stream=odd, node="cam-host") == 10  # fmt: skip
    assert _value(families["streamer_stream_state"], "streamer_stream_state", stream=odd,
                  state="offline") == 1  # fmt: skip
    offline = families["streamer_stream_offline_since_seconds"]
    assert _value(offline, "streamer_stream_offline_since_seconds", stream=odd) == 1718000000.5
    assert families["streamer_frames_decoded"].documentation == "Frames that reached the pipeline."


def test_histograms_are_cumulative_with_an_infinite_bucket_sum_and_count():
    run = _run(_stream("a"), batch_sizes={1: 2, 3: 1, 9: 1})
    families = _families(render_metrics(run))
    h = families["streamer_latency_seconds"]
    assert h.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in h.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 2, "1.0": 3, "+Inf": 4}  # 0.1 itself is in the ≤ 0.1 bucket
    assert _value(h, "streamer_latency_seconds_count", stream="a") == 4
    assert _value(h, "streamer_latency_seconds_sum", stream="a") == pytest.approx(3.65)
    b = families["streamer_encoder_batch_size"]
    buckets = [(s.labels["le"], s.value) for s in b.samples if s.name.endswith("_bucket")]
    assert buckets == [("1", 2), ("2", 2), ("4", 3), ("8", 3), ("16", 4), ("32", 4), ("64", 4),
                       ("128", 4), ("+Inf", 4)]  # fmt: skip
    assert _value(b, "streamer_encoder_batch_size_sum") == 14
    assert _value(b, "streamer_encoder_batch_size_count") == 4


def test_histogram_bounds_must_increase():
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))


def test_each_family_is_written_once_with_its_help_and_type():
    text = render_metrics(_run(_stream("a"), _stream("b")), {"clients": {"mjpeg": 1}})
    names = [family.name for family in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)) == 18  # without an LLM: its eight are left out
    for kind in ("HELP", "TYPE"):
        lines = [line.split()[2] for line in text.splitlines() if line.startswith(f"# {kind} ")]
        assert len(lines) == len(set(lines)) == len(names)
    counters = [f for f in text_string_to_metric_families(text) if f.type == "counter"]
    assert all(s.name.endswith("_total") for f in counters for s in f.samples)


def _archive_status(state="ok", recorder="recording") -> dict:
    """The archive's state as the run carries it (`ArchiveObserver.status`): plain values."""
    return {
        "path": "arch", "state": state, "error": None if state == "ok" else "disk full",
        "moments": {"written": 40, "queued": 3, "dropped": 1, "lost": 0 if state == "ok" else 7,
                    "waiting": 5},
        "recordings": {"door": {"state": recorder, "detail": None, "files": 2,
                                "bytes": 123456, "dropped": 5}},
        "clips": {"written": 2, "failed": 1, "waiting": 1},
    }  # fmt: skip


def test_the_archives_state_is_read_from_the_plain_status_the_run_carries():
    run = _run(_stream("door"))
    without = _families(render_metrics(run))
    assert not [name for name in without if "archive" in name or "recording" in name]
    status = _archive_status()
    run.archive = SimpleNamespace(status=lambda: status)
    text = render_metrics(run)
    families = _families(text)
    names = [family.name for family in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)) == 18 + 13
    assert _value(families["streamer_archive_up"], "streamer_archive_up") == 1
    assert _value(families["streamer_archive_rows"], "streamer_archive_rows_total") == 40
    assert _value(families["streamer_archive_rows_queued"], "streamer_archive_rows_queued") == 3
    assert _value(families["streamer_archive_rows_waiting"], "streamer_archive_rows_waiting") == 5
    clips = families["streamer_archive_clips"]
    assert _value(clips, "streamer_archive_clips_total", outcome="failed") == 1
    recorded = families["streamer_recording_bytes"]
    assert _value(recorded, "streamer_recording_bytes_total", stream="door") == 123456
    states = families["streamer_recording_state"]
    assert _value(states, "streamer_recording_state", stream="door", state="recording") == 1
    assert sum(s.value for s in states.samples) == 1
    status.update(_archive_status("failed", "failed"))  # read again at the next scrape
    families = _families(render_metrics(run))
    assert _value(families["streamer_archive_up"], "streamer_archive_up") == 0
    assert _value(families["streamer_archive_state"], "streamer_archive_state",
                  state="failed") == 1  # fmt: skip
    assert _value(families["streamer_archive_rows_lost"], "streamer_archive_rows_lost_total") == 7
    assert _value(families["streamer_recording_state"], "streamer_recording_state",
                  stream="door", state="failed") == 1  # fmt: skip


def test_each_registry_reads_its_own_run_at_scrape_time():
    first, second = _run(_stream("a")), _run(_stream("b"))
    registry = metrics_registry(first, lambda: {"disconnects": {"stalled": first.stalls}})
    first.stalls = 0
    scrape = lambda: _families(generate_latest(registry).decode())  # noqa: E731
    before = scrape()
    first.streams[0].stats.decoded = 25  # the run counts; the collector only reads
    first.stalls = 2
    after = scrape()
    decoded = after["streamer_frames_decoded"]
    assert _value(before["streamer_frames_decoded"], "streamer_frames_decoded_total") == 10
    assert _value(decoded, "streamer_frames_decoded_total", stream="a") == 25
    assert [s.labels["stream"] for s in decoded.samples] == ["a"]  # not the other run's "b"
    stalled = after["streamer_web_disconnects"]
    assert _value(stalled, "streamer_web_disconnects_total", reason="stalled") == 2
    assert _value(_families(render_metrics(second))["streamer_frames_decoded"],
                  "streamer_frames_decoded_total", stream="b") == 10  # fmt: skip
    # nothing was put in prometheus_client's global registry
    assert not any(f.name.startswith("streamer_") for f in REGISTRY.collect())


def test_encoder_counters_are_the_encoder_services_load_read_at_scrape_time():
    run = _run(_stream("a"))
    assert encoder_counters(run) is run.encoder.load()
    assert _value(_families(render_metrics(run))["streamer_encoder_images"],
                  "streamer_encoder_images_total") == 12  # fmt: skip
    run.encoder.load().images = 20  # the next scrape sees the work done since
    assert _value(_families(render_metrics(run))["streamer_encoder_images"],
                  "streamer_encoder_images_total") == 20  # fmt: skip


async def test_metrics_after_a_real_run_match_its_summary(
    tmp_path, small_clip, tiny_encoder, double
):
    viewer = WebViewer(ServeConfig(port=0))
    config = RunConfig(
        input=f"clip={small_clip}", outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
        llm=LlmConfig(url=double.url), captions=CaptionPolicy(1.0, 1.0, 1e-9),
    )  # fmt: skip

    async def check(viewer):
        async with (
            aiohttp.ClientSession() as session,
            session.get(viewer.url + "metrics") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return await response.text()

    summary, text = await run_and_check(config, tiny_encoder, viewer, check)
    families = _families(text)
    expected = {
        "streamer_frames_decoded": "counter", "streamer_frames_analysed": "counter",
        "streamer_frames_delivered": "counter", "streamer_frames_dropped": "counter",
        "streamer_captions": "counter", "streamer_reconnects": "counter",
        "streamer_damaged": "counter",
        "streamer_stream_state": "gauge", "streamer_latency_seconds": "histogram",
        "streamer_llm_requests": "counter", "streamer_llm_errors": "counter",
        "streamer_llm_last_latency_seconds": "gauge", "streamer_llm_state": "gauge",
        "streamer_encoder_batches": "counter", "streamer_encoder_images": "counter",
        "streamer_encoder_busy_seconds": "counter", "streamer_encoder_batch_size": "histogram",
        "streamer_web_clients": "gauge", "streamer_uptime_seconds": "gauge",
    }  # fmt: skip
    assert {name: families[name].type for name in expected if name in families} == expected
    samples = [sample for family in families.values() for sample in family.samples]

    def value(name: str, **labels) -> float:
        found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) == 1, f"{name}{labels}: {found}"
        return found[0]

    (stream,) = summary.streams
    assert value("streamer_frames_decoded_total", stream="clip") == 50
    assert value("streamer_frames_delivered_total", stream="clip") == stream.frames == 50
    assert value("streamer_frames_analysed_total", stream="clip") == stream.analysed
    assert value("streamer_frames_dropped_total", stream="clip") == 0
    assert value("streamer_damaged_total", stream="clip") == stream.damaged == 0
    assert value("streamer_captions_total", stream="clip") == stream.captions == 2
    assert value("streamer_stream_state", stream="clip", state="ended") == 1
    assert value("streamer_stream_state", stream="clip", state="playing") == 0
    assert value("streamer_latency_seconds_count", stream="clip") == 50
    assert value("streamer_latency_seconds_bucket", stream="clip", le="+Inf") == 50
    assert value("streamer_latency_seconds_sum", stream="clip") > 0
    assert value("streamer_llm_requests_total") >= 2
    assert value("streamer_llm_captions_total") == 2
    assert value("streamer_llm_errors_total") == 0
    assert value("streamer_llm_last_latency_seconds") > 0
    assert value("streamer_llm_state", state="ok") == 1
    assert value("streamer_encoder_images_total") == stream.analysed
    assert value("streamer_encoder_batch_size_count") == value("streamer_encoder_batches_total")
    assert value("streamer_encoder_batch_size_sum") == stream.analysed


async def test_a_damaged_file_shows_its_damaged_packets_in_metrics_and_status(
    tmp_path, small_clip, tiny_encoder
):
    """A file with bytes overwritten mid-way: the packets that do not decode are counted once,
    and /metrics, /api/status and the summary agree on the number."""
    path = damaged_copy(small_clip, tmp_path / "damaged.mp4")
    viewer = WebViewer(ServeConfig(port=0))
    config = RunConfig(input=f"clip={path}", outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))

    async def check(viewer):
        async with aiohttp.ClientSession() as session:
            async with session.get(viewer.url + "metrics") as response:
                metrics = _families(await response.text())["streamer_damaged"]
            async with session.get(viewer.url + "api/status") as response:
                (status,) = (await response.json())["streams"]
        return _value(metrics, "streamer_damaged_total", stream="clip"), status["damaged"]

    summary, (metric, served) = await run_and_check(config, tiny_encoder, viewer, check)
    (stream,) = summary.streams
    assert stream.damaged_packets > 0
    assert metric == served == stream.damaged == stream.damaged_packets
