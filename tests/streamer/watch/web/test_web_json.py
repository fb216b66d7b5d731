"""The viewer's JSON answers hold no value JSON cannot carry: a stream removed before it
delivered a frame has NaN latencies in its summary, which the DELETE answer once turned into
a 500 (found by the soak benchmark)."""

import json
import math

from streamer.report import StreamSummary
from streamer.watch.web._http import json_response


def test_nan_and_infinity_are_written_as_null_everywhere():
    nan = float("nan")
    answer = json_response({"p50": nan, "list": [1.5, float("inf")], "deep": {"t": (nan, 2.0)}})
    assert json.loads(answer.text) == {"p50": None, "list": [1.5, None], "deep": {"t": [None, 2.0]}}
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"


def test_the_summary_of_a_stream_that_never_delivered_a_frame_is_an_answer():
    fields = StreamSummary.__dataclass_fields__
    assert "latency_ms" in fields
    summary = {name: 0 for name in fields} | {"name": "door", "latency_ms": (math.nan,) * 3}
    body = json.loads(json_response(summary).text)
    assert body["name"] == "door" and body["latency_ms"] == [None, None, None]
