"""`/metrics` as Prometheus reads it: the exposition parsed by prometheus_client's own parser."""

import math

import aiohttp
import pytest
from media import damaged_copy
from prometheus_client.parser import text_string_to_metric_families
from web_helpers import run_and_check

from streamer import CaptionPolicy, OutputConfig, RunConfig
from streamer.config import ServeConfig
from streamer.core.stats import Histogram
from streamer.llm import LlmConfig
from streamer.watch.web import WebViewer
from streamer.watch.web.metrics import Exposition, counts_histogram, histogram_value


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(family, name: str, **labels) -> float:
    for sample in family.samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no sample {name}{labels} in {family.samples}")


def test_label_values_and_help_are_escaped_so_the_parser_reads_them_back():
    out = Exposition()
    odd = 'cam "front"\\yard\nnorth'
    out.counter("streamer_x_total", "Help with a \\ backslash\nand a line break.", [
        ({"stream": odd}, 3), ({"stream": "plain"}, 0),
    ])  # fmt: skip
    out.gauge("streamer_y", "A gauge.", [({}, float("nan")), ({"k": "inf"}, math.inf)])
    families = _families(out.text())
    counter = families["streamer_x"]
    assert counter.type == "counter"
    assert counter.documentation == "Help with a \\ backslash\nand a line break."
    assert _value(counter, "streamer_x_total", stream=odd) == 3
    gauge = families["streamer_y"]
    assert math.isnan(gauge.samples[0].value) and gauge.samples[1].value == math.inf


def test_histograms_are_cumulative_with_an_infinite_bucket_sum_and_count():
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    out = Exposition()
    out.histogram("streamer_h_seconds", "H.", [({"stream": "a"}, histogram_value(histogram))])
    out.histogram("streamer_b", "B.", [({}, counts_histogram({1: 2, 3: 1, 9: 1}, (1, 2, 4, 8)))])
    families = _families(out.text())
    h = families["streamer_h_seconds"]
    assert h.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in h.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 2, "1.0": 3, "+Inf": 4}  # 0.1 itself is in the ≤ 0.1 bucket
    assert _value(h, "streamer_h_seconds_count", stream="a") == 4
    assert _value(h, "streamer_h_seconds_sum", stream="a") == pytest.approx(3.65)
    b = families["streamer_b"]
    buckets = [(s.labels["le"], s.value) for s in b.samples if s.name.endswith("_bucket")]
    assert buckets == [("1", 2), ("2", 2), ("4", 3), ("8", 3), ("+Inf", 4)]
    assert _value(b, "streamer_b_sum") == 14 and _value(b, "streamer_b_count") == 4


def test_histogram_bounds_must_increase():
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))


def test_a_family_written_twice_or_a_bad_name_is_a_bug_caught_at_once():
    out = Exposition()
    out.gauge("streamer_a", "A.", [])
    with pytest.raises(ValueError, match="twice"):
        out.gauge("streamer_a", "A.", [])
    with pytest.raises(ValueError, match="_total"):
        out.counter("streamer_c", "C.", [])
    with pytest.raises(ValueError, match="metric name"):
        out.gauge("streamer-bad", "B.", [])


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
