import math

import pytest

from streamer.core.stats import LatencyTracker, RateMeter, StreamRow, status_table


def test_latency_percentiles_over_a_sliding_window():
    tracker = LatencyTracker(window=100)
    assert all(math.isnan(v) for v in tracker.percentiles(50, 99))
    for ms in range(1, 1001):  # only the last 100 (901..1000 ms) remain
        tracker.add(ms / 1000)
    p50, p99 = tracker.percentiles(50, 99)
    assert len(tracker) == 100
    assert p50 == pytest.approx(0.9505, abs=1e-3) and p99 == pytest.approx(0.999, abs=1e-3)


def test_rate_meter_counts_per_second_between_readings():
    meter = RateMeter(last_count=0, last_time=10.0)
    assert meter.rate(50, now=12.0) == pytest.approx(25.0)
    assert meter.rate(50, now=13.0) == 0.0


def test_status_table_has_a_row_per_stream_and_dashes_for_no_latency():
    rows = [
        StreamRow("door", "online", 25.0, 2.0, 24.9, 3, 41.0, 80.0, 120.0, 1, damaged=17),
        StreamRow("yard-with-a-very-long-name", "offline", 0, 0, 0, 0, *[float("nan")] * 3, 4),
    ]
    lines = status_table(rows).splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["stream", "state", "in/s"]
    assert lines[1].split() == [
        "door",
        "online",
        "25.0",
        "2.0",
        "24.9",
        "3",
        "41",
        "80",
        "120",
        "1",
        "17",
    ]
    assert lines[0].split()[-2:] == ["recon", "damaged"]
    assert lines[2].split()[-5:] == ["-", "-", "-", "4", "0"]
    assert lines[2].split()[0] == "yard-with-a-very-long-name"  # it was cut at 19 characters


def test_names_past_the_widest_column_keep_their_start_and_end():
    # Two playlists of one server were both "127.0.0.1_23466_hls".
    names = [f"127.0.0.1_23466_hls_the_index_of_camera_{n}.m3u8" for n in ("a", "b")]
    rows = [StreamRow(n, "online", 25.0, 2.0, 24.9, 0, 41.0, 80.0, 120.0, 0) for n in names]
    lines = status_table(rows).splitlines()
    shown = [line.split()[0] for line in lines[1:]]
    assert len(set(shown)) == 2 and all(len(s) == 40 and "…" in s for s in shown)
    assert all(s.startswith("127.0.0.1_23466_hls_") and s.endswith(".m3u8") for s in shown)
    assert len({len(line) for line in lines}) == 1  # the columns line up
