"""A running stream's labels, alerts and captions changed over HTTP: each change shows in that
stream's next JSON Lines rows, never in the other stream's, and neither stream stops.

Real parts: the GStreamer RTSP server's two cameras, the tiny random CLIP (its text tower
embeds the new labels and queries), the viewer's HTTP server. Random weights carry no meaning,
so an alert's threshold of -1 makes every analysed frame match (as the alert tests do); the
captions come from the viewer tests' LM Studio double, numbered so that none is a repeat of
the one before (a repeat is not recorded, which would hide what is measured).
"""

import asyncio
import contextlib
import json
import time

import aiohttp
import pytest
from live_helpers import wait_until
from media import read_jsonl

from streamer import AnalysisConfig, CaptionPolicy, OutputConfig, RunConfig, run_pipeline
from streamer.config import ServeConfig
from streamer.core.retry import RetryPolicy
from streamer.llm import LlmConfig
from streamer.sources import SourceOptions
from streamer.watch.web import WebViewer

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = SourceOptions(open_timeout=3.0, read_timeout=2.0, reconnect=RetryPolicy(0.2, cap=0.8))
# Made-up words: none is in the shipped vocabulary cam1 keeps.
FIRST, SECOND = ("blorft", "snizzle", "quimble"), ("wuzzet", "frabjous")


def _always(query: str) -> dict:
    """An alert every analysed frame fires (random weights: any cosine is ≥ -1)."""
    return {"query": query, "alert-threshold": -1, "alert-frames": 1, "alert-cooldown": 0}


@contextlib.asynccontextmanager
async def _running(tmp_path, rtsp_server, encoder, **config):
    """A live run on cam1 with a viewer (token set), in this loop; yields (viewer URL, run's
    viewer) and stops the run at the end."""
    outputs = OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl"))
    config = RunConfig(input=f"cam1={rtsp_server.url('cam1')}", outputs=outputs, sources=FAST,
                       analysis=AnalysisConfig(analyze_fps=4.0), **config)  # fmt: skip
    viewer = WebViewer(ServeConfig(port=0, token=TOKEN))
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=encoder, stop=stop,
                                            observers=[viewer]))  # fmt: skip
    try:
        await wait_until(lambda: _rows(tmp_path, "cam1", "analysis") or task.done(), 30,
                         "cam1 analysed")  # fmt: skip
        assert not task.done(), task.result()
        yield viewer.url.rstrip("/"), viewer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _records(tmp_path, name: str) -> list[dict]:
    path = tmp_path / f"{name}.jsonl"
    return read_jsonl(path) if path.exists() else []


def _rows(tmp_path, name: str, kind: str, since: int = 0) -> list[dict]:
    """The stream's records of one type, from record number `since` on."""
    return [r for r in _records(tmp_path, name)[since:] if r["type"] == kind]


def _labels(rows: list[dict]) -> set[str]:
    return {tag["label"] for row in rows for tag in row["tags"]}


async def _send(session, method: str, url: str, body: dict | None = None) -> dict:
    async with session.request(method, url, json=body, headers=AUTH) as response:
        answer = await response.json()
        assert response.status in (200, 201), answer
        return answer


@pytest.mark.slow
async def test_labels_and_alerts_change_from_the_streams_next_rows_and_only_its_own(
    tmp_path, rtsp_server, tiny_encoder
):
    async with _running(tmp_path, rtsp_server, tiny_encoder) as (url, _), \
            aiohttp.ClientSession() as s:  # fmt: skip
        body = {"name": "door", "input": rtsp_server.url("cam2"), "labels": list(FIRST),
                "alerts": [_always("a person at the door")]}  # fmt: skip
        added = await _send(s, "POST", url + "/api/streams", body)
        assert added["labels"] == list(FIRST) and added["captions"] == "on"
        assert [a["query"] for a in added["alerts"]] == ["a person at the door"]
        await wait_until(lambda: len(_rows(tmp_path, "door", "alert")) >= 4, 30, "door alerts")
        analysed = _rows(tmp_path, "door", "analysis")
        assert analysed and _labels(analysed) <= set(FIRST)
        assert {a["query"] for a in _rows(tmp_path, "door", "alert")} == {"a person at the door"}

        # Other labels and another alert: from door's next rows on.
        change = {"labels": ", ".join(SECOND), "alerts": [_always("a dog")]}
        changed = await _send(s, "PATCH", url + "/api/streams/door", change)
        assert changed["labels"] == list(SECOND)
        assert [a["query"] for a in changed["alerts"]] == ["a dog"]
        mark = len(_records(tmp_path, "door"))
        await wait_until(lambda: len(_rows(tmp_path, "door", "alert", mark)) >= 4, 30,
                         "door's new alert")  # fmt: skip
        after = _rows(tmp_path, "door", "analysis", mark)
        assert after and _labels(after) <= set(SECOND), _labels(after)
        assert {a["query"] for a in _rows(tmp_path, "door", "alert", mark)} == {"a dog"}

        # No alert at all: none fires from then on, the analysis goes on.
        cleared = await _send(s, "PATCH", url + "/api/streams/door", {"alerts": []})
        assert cleared["alerts"] == []
        mark = len(_records(tmp_path, "door"))
        await wait_until(lambda: len(_rows(tmp_path, "door", "analysis", mark)) >= 8, 30,
                         "door analysed with no alert")  # fmt: skip
        assert _rows(tmp_path, "door", "alert", mark) == []
        listed = await _send(s, "GET", url + "/api/streams/door")
        assert listed["labels"] == list(SECOND) and listed["alerts"] == []

    # cam1 kept the run's vocabulary and had no alert all along.
    cam1 = _rows(tmp_path, "cam1", "analysis")
    assert len(cam1) > 10 and not _labels(cam1) & {*FIRST, *SECOND}
    assert _rows(tmp_path, "cam1", "alert") == []


@pytest.mark.slow
async def test_captions_off_for_one_stream_while_the_other_goes_on_captioned(
    tmp_path, rtsp_server, tiny_encoder, double
):
    policy = CaptionPolicy(min_interval=0.3, max_age=0.3, scene_threshold=1e-9)
    llm = LlmConfig(url=double.url)
    async with _running(tmp_path, rtsp_server, tiny_encoder, llm=llm, captions=policy) as (
        url, viewer), aiohttp.ClientSession() as s:  # fmt: skip
        await _send(
            s, "POST", url + "/api/streams", {"name": "door", "input": rtsp_server.url("cam2")}
        )
        await wait_until(lambda: len(_rows(tmp_path, "door", "caption")) >= 3, 30,
                         "door captioned")  # fmt: skip
        off = await _send(s, "PATCH", url + "/api/streams/door", {"captions": "off"})
        assert off["captions"] == "off"
        marks = {name: len(_records(tmp_path, name)) for name in ("door", "cam1")}
        asked = len(double.chat_bodies)
        await wait_until(lambda: len(_rows(tmp_path, "door", "analysis", marks["door"])) >= 12,
                         30, "door analysed with captions off")  # fmt: skip
        assert _rows(tmp_path, "door", "caption", marks["door"]) == []
        cam1 = _rows(tmp_path, "cam1", "caption", marks["cam1"])
        assert len(cam1) >= 3 and all(c["source"] == "llm" for c in cam1)
        # The LLM was asked for cam1's only (the prompt names the stream); one request for
        # door may have been on its way when it was turned off (one at a time per stream).
        bodies = [json.dumps(body) for body in double.chat_bodies[asked:]]
        assert sum('\\"door\\"' in body for body in bodies) <= 1
        assert sum('\\"cam1\\"' in body for body in bodies) >= 3

        on = await _send(s, "PATCH", url + "/api/streams/door", {"captions": True})
        assert on["captions"] == "on"
        mark = len(_records(tmp_path, "door"))
        started = time.monotonic()
        await wait_until(lambda: len(_rows(tmp_path, "door", "caption", mark)) >= 2, 30,
                         "door captioned again")  # fmt: skip
        assert time.monotonic() - started < 15
        assert viewer.run is not None
