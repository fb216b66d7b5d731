"""The stream API on a running run: streams added, changed and removed over HTTP from a real
RTSP server while another stream keeps going; the refusals; the OpenAPI document."""

import asyncio
import itertools
import json
import statistics
import time

import aiohttp
import pytest
from live_helpers import wait_until
from media import ffprobe, read_jsonl, video_stream

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.analysis.alerts import AlertRule
from streamer.cli import build
from streamer.cli.main import build_parser
from streamer.config import ServeConfig
from streamer.core.retry import RetryPolicy
from streamer.errors import ConfigError
from streamer.sources import SourceOptions
from streamer.watch.web import WebViewer
from streamer.watch.web.stream_api import FIELDS, ROUTES, openapi, parse_body

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = SourceOptions(open_timeout=3.0, read_timeout=2.0, reconnect=RetryPolicy(0.2, cap=0.8))


class _Running:
    """A live run on cam1 with a viewer (token set unless `token=None`), in this loop; its
    stream frame counters are sampled every 50 ms to show the stream never stopped."""

    def __init__(self, tmp_path, rtsp_server, encoder, token: str | None = TOKEN) -> None:
        video, jsonl = str(tmp_path / "{stream}.mp4"), str(tmp_path / "{stream}.jsonl")
        outputs = OutputConfig(video=video, jsonl=jsonl, preset="ultrafast")
        cam1 = f"cam1={rtsp_server.url('cam1')}"
        self.config = RunConfig(input=cam1, outputs=outputs, sources=FAST)
        self.viewer = WebViewer(ServeConfig(port=0, token=token))
        self.encoder = encoder
        self.stop = asyncio.Event()
        self.samples: list[tuple[float, int]] = []  # (time, cam1 frames delivered)

    async def __aenter__(self):
        running = run_pipeline(
            self.config, encoder=self.encoder, stop=self.stop, observers=[self.viewer]
        )
        self.task = asyncio.create_task(running)
        await wait_until(lambda: self.delivered("cam1") > 5 or self.task.done(), 30, "cam1 runs")
        assert not self.task.done(), self.task.result()
        self.sampler = asyncio.create_task(self._sample())
        self.url = self.viewer.url.rstrip("/")
        return self

    async def __aexit__(self, *exc):
        self.sampler.cancel()
        self.stop.set()
        self.summary = await asyncio.wait_for(self.task, 30)

    def delivered(self, name: str) -> int:
        run = self.viewer.run
        found = [s for s in (run.streams if run else ()) if s.name == name]
        return found[0].stats.delivered if found else 0

    async def _sample(self) -> None:
        while True:
            self.samples.append((time.monotonic(), self.delivered("cam1")))
            await asyncio.sleep(0.05)

    def longest_stall(self) -> float:
        """The longest time cam1's delivered count did not rise, over the samples."""
        longest, since, last = 0.0, self.samples[0][0], self.samples[0][1]
        for at, count in self.samples:
            if count > last:
                since, last = at, count
            longest = max(longest, at - since)
        return longest


async def _call(session, method, url, **kwargs):
    async with session.request(method, url, **kwargs) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()


async def _status(session, url, name):
    _, body = await _call(session, "GET", url + "/api/status")
    found = [s for s in body["streams"] if s["name"] == name]
    return found[0] if found else None


def _analysis_gaps(path) -> list[float]:
    times = [r["pts"] for r in read_jsonl(path) if r["type"] == "analysis"]
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.slow
async def test_a_stream_added_changed_and_removed_while_another_runs_on(
    tmp_path, rtsp_server, tiny_encoder
):
    session = aiohttp.ClientSession(headers=AUTH)
    async with _Running(tmp_path, rtsp_server, tiny_encoder) as run, session as s:
        body = {"name": "door", "input": rtsp_server.url("cam2"), "analyze-fps": 1}
        status, added = await _call(s, "POST", run.url + "/api/streams", json=body, headers=AUTH)
        assert status == 201, added
        assert added["name"] == "door" and added["analyze_fps"] == 1.0
        assert added["outputs"]["jsonl"] == str(tmp_path / "door.jsonl")

        # Its frames reach the viewer and its rows its own JSON Lines.
        async def door_frames() -> int:
            found = await _status(s, run.url, "door")
            return found["frames"]["delivered"] if found else 0

        deadline = time.monotonic() + 30
        while await door_frames() < 40:
            assert time.monotonic() < deadline, "door's frames never reached the viewer"
            await asyncio.sleep(0.2)
        _, listed = await _call(s, "GET", run.url + "/api/streams")
        assert [x["name"] for x in listed["streams"]] == ["cam1", "door"]
        await wait_until(lambda: len(_analysis_gaps(tmp_path / "door.jsonl")) >= 3, 20,
                         "door analysed at 1 frame a second")  # fmt: skip
        slow_gaps = _analysis_gaps(tmp_path / "door.jsonl")
        assert statistics.median(slow_gaps) == pytest.approx(1.0, abs=0.3)

        # A faster rate: analysed frames come four times as often from then on.
        status, changed = await _call(s, "PATCH", run.url + "/api/streams/door",
                                      json={"analyze_fps": 4}, headers=AUTH)  # fmt: skip
        assert status == 200 and changed["analyze_fps"] == 4.0, changed
        before = len(_analysis_gaps(tmp_path / "door.jsonl"))
        await wait_until(lambda: len(_analysis_gaps(tmp_path / "door.jsonl")) >= before + 8,
                         20, "door analysed at its new rate")  # fmt: skip
        fast_gaps = _analysis_gaps(tmp_path / "door.jsonl")[before + 1 :]
        assert statistics.median(fast_gaps) == pytest.approx(0.25, abs=0.1), fast_gaps

        # Removed: its files are finished, the video plays to its last frame.
        status, summary = await _call(s, "DELETE", run.url + "/api/streams/door", headers=AUTH)
        assert status == 200, summary
        assert summary["name"] == "door" and summary["frames"] > 40
        latency = summary["latency_ms"]  # as /api/status has it, not a bare list of floats
        assert set(latency) == {"p50", "p95", "p99"} and latency["p99"] == round(latency["p99"], 1)
        video = video_stream(ffprobe(tmp_path / "door.mp4"))
        assert int(video["nb_read_frames"]) == summary["frames"]
        records = read_jsonl(tmp_path / "door.jsonl")  # every line a whole record
        assert sum(r["type"] == "analysis" for r in records) == summary["analysed"]
        assert await _status(s, run.url, "door") is None
        _, listed = await _call(s, "GET", run.url + "/api/streams")
        assert [x["name"] for x in listed["streams"]] == ["cam1"]
        status, gone = await _call(s, "DELETE", run.url + "/api/streams/door", headers=AUTH)
        assert status == 404 and "door" in gone["error"]
        cam1_at_removal = run.delivered("cam1")
        await wait_until(lambda: run.delivered("cam1") > cam1_at_removal + 10, 10, "cam1 goes on")
    # cam1 never stopped: its count rose all along (a live 25 fps stream on a loaded machine).
    assert run.longest_stall() < 2.0, run.longest_stall()
    assert [x.name for x in run.summary.streams] == ["cam1"]


@pytest.mark.slow
async def test_changes_are_refused_with_a_json_error_naming_the_problem(
    tmp_path, rtsp_server, tiny_encoder
):
    async with _Running(tmp_path, rtsp_server, tiny_encoder) as run, aiohttp.ClientSession() as s:
        url = run.url + "/api/streams"
        cam2 = rtsp_server.url("cam2")
        cases = [
            ("POST", url, {"name": "x", "input": cam2}, {}, 401, "token"),
            ("POST", url, {"name": "x", "input": cam2}, {"Authorization": "Bearer no"}, 401,
             "token"),
            ("DELETE", url + "/cam1", None, {}, 401, "token"),
            ("GET", url, None, {"Authorization": "Bearer no"}, 401, "token"),  # JSON too
            ("POST", url, {"name": "x", "input": cam2, "analyze-fps": 0}, AUTH, 400,
             "analyze-fps: must be a number of frames per second > 0"),
            ("POST", url, {"name": "x", "input": cam2, "nmae": 1}, AUTH, 400,
             "nmae: unknown key (did you mean 'name'?)"),
            ("POST", url, {"input": cam2}, AUTH, 400, "name: missing"),
            ("POST", url, {"name": "a b", "input": cam2}, AUTH, 400, "name: 'a b' is no stream"),
            ("POST", url, {"name": "x", "input": "ftp://cam/1"}, AUTH, 400, "ftp:// streams"),
            ("POST", url, {"name": "x", "input": cam2, "jsonl": str(tmp_path / "cam1.jsonl")},
             AUTH, 400, "written by stream 'cam1'"),
            ("POST", url, {"name": "cam1", "input": cam2}, AUTH, 409, "'cam1' runs already"),
            ("PATCH", url + "/cam1", {"output": "a.mp4"}, AUTH, 400,
             "output: cannot be set when changing"),
            ("PATCH", url + "/nope", {"analyze-fps": 1}, AUTH, 404, "no stream named 'nope'"),
            ("DELETE", url + "/nope", None, AUTH, 404, "no stream named 'nope'"),
            ("GET", url + "/nope", None, AUTH, 404, "no stream named 'nope'"),
        ]  # fmt: skip
        for method, where, body, headers, code, words in cases:
            extra = {"json": body} if body is not None else {}
            status, answer = await _call(s, method, where, headers=headers, **extra)
            seen = (status, words in answer.get("error", ""))
            assert seen == (code, True), (method, body, answer)
        async with s.post(url, data="{", headers={**AUTH, "Content-Type": "application/json"}) as r:
            assert r.status == 400 and "not valid JSON" in (await r.json())["error"]
        async with s.post(url, data="name=x", headers=AUTH) as r:  # a form: no
            assert r.status == 400 and "application/json" in (await r.json())["error"]
        status, listed = await _call(s, "GET", url, headers=AUTH)
        assert [x["name"] for x in listed["streams"]] == ["cam1"]  # nothing was added
        assert not (tmp_path / "x.jsonl").exists()  # refused before any file was made


@pytest.mark.slow
async def test_without_a_token_the_api_reads_but_changes_nothing(
    tmp_path, rtsp_server, tiny_encoder
):
    async with _Running(tmp_path, rtsp_server, tiny_encoder, token=None) as run, \
            aiohttp.ClientSession() as s:  # fmt: skip
        status, listed = await _call(s, "GET", run.url + "/api/streams")
        assert status == 200 and listed["streams"][0]["name"] == "cam1"
        body = {"name": "x", "input": rtsp_server.url("cam2")}
        status, answer = await _call(s, "POST", run.url + "/api/streams", json=body)
        assert status == 403 and "--serve-token" in answer["error"]
        status, answer = await _call(s, "DELETE", run.url + "/api/streams/cam1")
        assert status == 403
        assert run.delivered("cam1") > 0 and [x.name for x in run.viewer.run.streams] == ["cam1"]


# A value each key takes, where "2" (an option's number) is not one.
EXAMPLES = {"name": "n", "input": "rtsp://h/s", "labels": "dog, cat", "alerts": ["a dog"],
            "captions": "off"}  # fmt: skip


def test_the_openapi_document_lists_every_route_and_every_field_the_bodies_take():
    document = openapi()
    assert document["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in ROUTES}
    schemas = document["components"]["schemas"]
    for kind, schema in (("add", schemas["AddStream"]), ("change", schemas["ChangeStream"])):
        takes = {f.key for f in FIELDS if kind in f.kinds}
        assert set(schema["properties"]) == takes
        assert schema["additionalProperties"] is False
        for key in takes:  # what the schema lists, the validation takes; anything else not
            field = next(f for f in FIELDS if f.key == key)
            value = EXAMPLES.get(key, "2" if field.row else "x")
            body = {"name": "n", "input": "rtsp://h/s", key: value} if kind == "add" else {
                key: value}  # fmt: skip
            assert parse_body(body, kind)
        with pytest.raises(ConfigError, match="zzz: unknown key"):
            parse_body({"name": "n", "input": "rtsp://h/s", "zzz": 1} if kind == "add" else {
                "zzz": 1}, kind)  # fmt: skip
    change, add = schemas["ChangeStream"]["properties"], schemas["AddStream"]["properties"]
    assert {"labels", "alerts", "captions"} <= set(change) <= set(add)
    assert "--alert-threshold" in json.dumps(change["alerts"])
    fps = schemas["ChangeStream"]["properties"]["analyze-fps"]
    assert "--analyze-fps" in fps["description"] and "'all'" in fps["description"]
    assert parse_body({"analyze-fps": "all"}, "change").settings == {"analysis.analyze_fps": None}


async def test_the_routes_are_served_with_the_document(tmp_path, small_clip, tiny_encoder):
    viewer = WebViewer(ServeConfig(port=0, token=TOKEN))
    config = RunConfig(input=f"clip={small_clip}", live=True,
                       outputs=OutputConfig(jsonl=str(tmp_path / "clip.jsonl")))  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                            observers=[viewer]))  # fmt: skip
    try:
        await wait_until(lambda: viewer.url is not None or task.done(), 30, "the viewer")
        async with aiohttp.ClientSession() as s:
            status, document = await _call(s, "GET", viewer.url + "api/openapi.json", headers=AUTH)
            served = {(r.method, r.resource.canonical) for r in viewer._runner.app.router.routes()
                      if r.resource.canonical.startswith("/api/streams")
                      or r.resource.canonical in ("/api/openapi.json", "/api/reload")}  # fmt: skip
            served.discard(("HEAD", "/api/streams"))
            served = {(m, p) for m, p in served if m != "HEAD"}
        assert status == 200 and document == openapi()
        assert served == {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_labels_alerts_and_captions_are_read_as_their_options_read_them():
    request = parse_body(
        {"labels": " dog, cat ,dog", "captions": "OFF",
         "alerts": ["a dog", {"query": " a red car ", "alert_threshold": "0.3",
                              "alert-frames": 1, "alert-cooldown": 0}]},
        "change",
    )  # fmt: skip
    settings = request.settings
    assert settings["analysis.labels"] == ("dog", "cat") and settings["captions"] is False
    dog, car = settings["alerts"]
    assert (dog.query, dog.settings) == ("a dog", {})
    assert (car.query, car.settings) == ("a red car", {"threshold": 0.3, "frames": 1,
                                                       "cooldown_s": 0.0})  # fmt: skip
    run_settings = {"threshold": -0.5, "frames": 3, "cooldown_s": 7}  # the run's --alert-*
    assert dog.rule("door", run_settings) == AlertRule("a dog", ("door",), -0.5, 3, 7)
    assert car.rule("door", {}) == AlertRule("a red car", ("door",), 0.3, 1, 0.0)
    assert dog.rule("door", {}) == AlertRule("a dog", ("door",))  # the declared defaults
    # The run's settings come as given, with or without an --alert of the run's own.
    for argv in (["--alert-threshold", "-0.5", "--alert-frames", "3", "--alert-cooldown", "7"],
                 ["--alert", "a cat", "--alert-threshold", "-0.5", "--alert-frames", "3",
                  "--alert-cooldown", "7"]):  # fmt: skip
        config = build.configure(
            build.settings(build_parser().parse_args(["run", "a.mp4", "--jsonl", "-", *argv]))
        )
        assert dog.rule("door", config.alert_settings) == AlertRule("a dog", ("door",), -0.5, 3, 7)
    listed = parse_body({"labels": ["a dog, running", "cat"], "alerts": []}, "change").settings
    assert listed == {"analysis.labels": ("a dog, running", "cat"), "alerts": ()}
    assert parse_body({"captions": True}, "change").settings == {"captions": True}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"labels": "/etc/passwd"}, "labels: '/etc/passwd' looks like a file"),
        ({"labels": " , "}, "labels: no label given"),
        ({"labels": [1, {}]}, "labels[1]: got a table; expected a string (like --labels)"),
        ({"alerts": "a dog"}, "alerts: must be an array of queries"),
        ({"alerts": [3]}, "alerts[0]: must be a query or an object"),
        ({"alerts": [{"threshold": 1}]}, "alerts[0].query: must be some text"),
        ({"alerts": [{"query": "x", "alert-threshold": 2}]},
         "alerts[0].alert-threshold: must be a cosine similarity in -1..1, got '2' "
         "(like --alert-threshold)"),
        ({"alerts": [{"query": "x", "frames": 2}]},
         "alerts[0].frames: unknown key; allowed here: query, alert-threshold"),
        ({"alerts": ["x", {"query": "x"}]}, "alerts[1]: 'x' is given twice"),
        ({"captions": "maybe"}, 'captions: must be "on" or "off"'),
        ({"captions": None}, 'captions: must be "on" or "off"'),
        ({"label": "dog"}, "label: unknown key (did you mean 'labels'?)"),
        ({"lable": "dog"}, "lable: unknown key (did you mean 'labels'?)"),
        ({"analyse": 2}, "analyse: unknown key (did you mean 'analyze-fps'?)"),
        ({"cpations": "on"}, "cpations: unknown key (did you mean 'captions'?)"),
        ({"blah": 1}, "blah: unknown key; allowed here: "),
    ],
)  # fmt: skip
def test_a_bad_labels_alerts_or_captions_value_is_refused_naming_where(body, words):
    with pytest.raises(ConfigError) as caught:
        parse_body(body, "change")
    assert words in str(caught.value)
