"""Reloading the `--config` file of a running run (`POST /api/reload`, and SIGHUP's handler
in the run's loop): real RTSP cameras, the real configuration reader, a tiny random encoder.
A reload touches only the streams the file changed; a file that does not read changes
nothing and says why; the token rules of every change; a run without a file answers 409."""

import asyncio
import itertools
import logging
import time

import aiohttp
import pytest
from live_helpers import RtspServer, wait_until
from media import ffprobe, read_jsonl, video_stream

from streamer import run_pipeline
from streamer.cli.build import configure, settings
from streamer.cli.main import build_parser
from streamer.cli.run import reloader_for
from streamer.config import ServeConfig
from streamer.errors import ConfigError
from streamer.watch.web import WebViewer

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def cams(gst_rtsp):
    """Three live cameras: /cam1, /cam2, /cam3."""
    server = RtspServer(gst_rtsp, {"cam1": "pattern", "cam2": "pattern", "cam3": "pattern"})
    server.start()
    yield server
    server.kill()


def write_config(path, out, sources: dict[str, str], extra: str = "") -> None:
    """A run's TOML: outputs per stream in `out`, fast reconnects, no LLM, `sources` by name."""
    entries = "".join(f'[[sources]]\nname = "{n}"\ninput = "{s}"\n' for n, s in sources.items())
    path.write_text(
        f'output = "{out}/{{stream}}.mp4"\njsonl = "{out}/{{stream}}.jsonl"\n'
        'preset = "ultrafast"\nno-llm = true\nopen-timeout = 3\nread-timeout = 2\n'
        f"reconnect-initial = 0.2\nreconnect-max = 0.8\n{extra}\n{entries}",
        encoding="utf-8",
    )


class Reloading:
    """A run of `--config FILE` in this loop, with a viewer (token set unless None) and the
    CLI's reloader (None: a run without a file); every stream's delivered count is sampled
    every 50 ms, by the stream object (a restarted stream is another one)."""

    def __init__(self, toml, encoder, token: str | None = TOKEN, reload: bool = True) -> None:
        args = build_parser().parse_args(["run", "--config", str(toml)])
        given = settings(args)
        self.config = configure(given)
        self.reloader = reloader_for(args, given, self.config) if reload else None
        self.viewer = WebViewer(ServeConfig(port=0, token=token))
        self.encoder = encoder
        self.stop = asyncio.Event()
        self.samples: dict[int, list[tuple[float, int]]] = {}  # id(stream) → (time, delivered)

    async def __aenter__(self):
        running = run_pipeline(self.config, encoder=self.encoder, stop=self.stop,
                               observers=[self.viewer], reloader=self.reloader)  # fmt: skip
        self.task = asyncio.create_task(running)
        names = [s.split("=")[0] for s in self.config.inputs]
        await wait_until(lambda: all(self.delivered(n) > 5 for n in names) or self.task.done(),
                         40, "every stream runs")  # fmt: skip
        assert not self.task.done(), self.task.result()
        self.sampler = asyncio.create_task(self._sample())
        self.url = self.viewer.url.rstrip("/")
        return self

    async def __aexit__(self, *exc):
        self.sampler.cancel()
        self.stop.set()
        self.summary = await asyncio.wait_for(self.task, 30)

    def stream(self, name: str):
        found = [s for s in self.viewer.run.streams if s.name == name]
        return found[0] if found else None

    def delivered(self, name: str) -> int:
        stream = self.viewer.run and self.stream(name)
        return stream.stats.delivered if stream else 0

    async def _sample(self) -> None:
        while True:
            for stream in self.viewer.run.streams:
                samples = self.samples.setdefault(id(stream), [])
                samples.append((time.monotonic(), stream.stats.delivered))
            await asyncio.sleep(0.05)

    def longest_stall(self, stream) -> float:
        """The longest time `stream`'s delivered count did not rise while it ran."""
        samples = self.samples[id(stream)]
        longest, since, last = 0.0, samples[0][0], samples[0][1]
        for at, count in samples:
            if count > last:
                since, last = at, count
            longest = max(longest, at - since)
        return longest


async def _call(session, method, url, **kwargs):
    async with session.request(method, url, **kwargs) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()


async def _names(session, url) -> list[str]:
    _, listed = await _call(session, "GET", url + "/api/streams", headers=AUTH)
    return [s["name"] for s in listed["streams"]]


def _analysed_pts(path) -> list[float]:
    return [r["pts"] for r in read_jsonl(path) if r["type"] == "analysis"]


def _frames(path) -> int:
    return int(video_stream(ffprobe(path))["nb_read_frames"])


@pytest.mark.slow
async def test_a_reload_restarts_only_the_stream_whose_input_changed(tmp_path, cams, tiny_encoder):
    toml, out = tmp_path / "run.toml", tmp_path
    write_config(toml, out, {"yard": cams.url("cam1"), "door": cams.url("cam2")})
    async with Reloading(toml, tiny_encoder) as run, aiohttp.ClientSession() as s:
        yard, old_door = run.stream("yard"), run.stream("door")
        await wait_until(lambda: len(_analysed_pts(out / "yard.jsonl")) >= 3, 20, "yard analysed")
        write_config(toml, out, {"yard": cams.url("cam1"), "door": cams.url("cam3")})
        status, answer = await _call(s, "POST", run.url + "/api/reload", headers=AUTH)
        assert status == 200, answer
        assert answer["changed"] == [{"name": "door", "what": "input"}]
        assert (answer["added"], answer["removed"], answer["kept"]) == ([], [], ["yard"])
        assert answer["summary"] == "reload: ~door (input)" and answer["failed"] == []
        at = run.delivered("yard")
        await wait_until(lambda: run.delivered("yard") > at + 25, 10, "yard goes on")
        # The old door's outputs are finished and kept beside the new ones: its video plays.
        assert _frames(out / "door.keep-1.mp4") == old_door.stats.delivered > 5
        kept_rows = _analysed_pts(out / "door.keep-1.jsonl")
        assert len(kept_rows) == old_door.stats.analysed
        door = run.stream("door")
        assert door is not old_door
        _, described = await _call(s, "GET", run.url + "/api/streams/door", headers=AUTH)
        assert described["input"] == cams.url("cam3")
        await wait_until(lambda: run.delivered("door") > 20, 30, "the new door runs")
        await wait_until(lambda: len(_analysed_pts(out / "door.jsonl")) >= 3, 20, "door analysed")
        assert run.stream("yard") is yard  # untouched: the same stream, never restarted
    assert run.longest_stall(yard) < 2.0, run.longest_stall(yard)
    # yard's JSON Lines run on without a restart: its times only rise, with no hole.
    pts = _analysed_pts(out / "yard.jsonl")
    gaps = [b - a for a, b in itertools.pairwise(pts)]
    assert min(gaps) > 0 and max(gaps) < 2.0, (min(gaps), max(gaps))
    assert len(pts) == yard.stats.analysed
    summaries = {x.name: x for x in run.summary.streams}
    assert set(summaries) == {"yard", "door"}
    assert _frames(out / "door.mp4") == summaries["door"].frames  # the new door's own video


async def test_a_new_input_that_does_not_come_up_puts_the_stream_back_on_its_old_one(
    tmp_path, cams, tiny_encoder
):
    # A camera's stream opens in the background: the reload answered "~door (input)" with
    # nothing failed, then the typo'd camera failed, and a run of one stream ended (exit 1).
    toml, out = tmp_path / "run.toml", tmp_path
    write_config(toml, out, {"door": cams.url("cam2")})
    async with Reloading(toml, tiny_encoder) as run, aiohttp.ClientSession() as s:
        write_config(toml, out, {"door": cams.url("typo")})  # the server has no such stream
        status, answer = await _call(s, "POST", run.url + "/api/reload", headers=AUTH)
        assert status == 200, answer
        assert answer["changed"] == [] and [f["name"] for f in answer["failed"]] == ["door"]
        assert "its new input cannot run" in answer["failed"][0]["error"], answer
        _, described = await _call(s, "GET", run.url + "/api/streams/door", headers=AUTH)
        assert described["input"] == cams.url("cam2")
        at = run.delivered("door")
        await wait_until(lambda: run.delivered("door") > at + 25, 30, "door back on cam2")
        assert not run.task.done()


@pytest.mark.slow
async def test_streams_added_and_removed_by_editing_the_file_and_sighups_queued(
    tmp_path, cams, tiny_encoder, caplog
):
    caplog.set_level(logging.INFO, logger="streamer")
    toml, out = tmp_path / "run.toml", tmp_path
    write_config(toml, out, {"yard": cams.url("cam1"), "door": cams.url("cam2")})
    async with Reloading(toml, tiny_encoder) as run, aiohttp.ClientSession() as s:
        yard, door = run.stream("yard"), run.stream("door")
        write_config(toml, out, {"yard": cams.url("cam1"), "gate": cams.url("cam3")}, "top-k = 3")
        run.reloader.request()  # what SIGHUP does in the run's loop
        await wait_until(lambda: run.reloader._lock.locked(), 5, "the reload runs")
        run.reloader.request()  # a second SIGHUP while it runs: served after it
        await wait_until(lambda: run.delivered("gate") > 20, 30, "gate added and running")
        queued = "reload: no stream changed; 1 option(s) changed for the next start"
        await wait_until(lambda: queued in caplog.text, 10, "the queued reload")
        assert await _names(s, run.url) == ["yard", "gate"]
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload:")]
        ignored = "reload: top-k: changed in the file; takes effect at the next start"
        assert lines == [
            "reload: +gate, -door; 1 option(s) changed for the next start", ignored,
            queued, ignored,
        ]  # fmt: skip
        assert run.viewer.run.notes["reload"].endswith(queued)  # under the status table
        assert run.stream("yard") is yard
        # The removed door's outputs are finished: its video plays to its last frame.
        assert _frames(out / "door.mp4") == door.stats.delivered > 5
        assert len(_analysed_pts(out / "door.jsonl")) == door.stats.analysed
    assert run.longest_stall(yard) < 2.0, run.longest_stall(yard)
    assert [x.name for x in run.summary.streams] == ["yard", "gate"]
    assert _frames(out / "gate.mp4") == run.summary.streams[1].frames > 20


def _start_error(toml) -> str:
    """What `streamer run --config FILE` says of the file at its start."""
    with pytest.raises(ConfigError) as caught:
        configure(settings(build_parser().parse_args(["run", "--config", str(toml)])))
    return str(caught.value)


@pytest.mark.slow
async def test_a_file_that_does_not_read_keeps_every_stream_and_says_why(
    tmp_path, cams, tiny_encoder, caplog
):
    toml, out = tmp_path / "run.toml", tmp_path
    write_config(toml, out, {"yard": cams.url("cam1"), "door": cams.url("cam2")})
    good = toml.read_text()
    async with Reloading(toml, tiny_encoder) as run, aiohttp.ClientSession() as s:
        yard, door = run.stream("yard"), run.stream("door")
        broken = [good.replace("[[sources]]", "[[sources]", 1),  # TOML syntax
                  good.replace("preset = ", "analyze-fps = 0\npreset = "),  # a bad value
                  good.replace('name = "door"', 'nmae = "door"')]  # an unknown key  # fmt: skip
        for text in broken:
            toml.write_text(text)
            expected = _start_error(toml)
            status, answer = await _call(s, "POST", run.url + "/api/reload", headers=AUTH)
            assert (status, answer) == (400, {"error": expected})
            assert f"reload: the running configuration is kept: {expected}" in caplog.text
        assert "not valid TOML" in caplog.text and "analyze-fps = 0" in caplog.text
        assert await _names(s, run.url) == ["yard", "door"]
        assert run.stream("yard") is yard and run.stream("door") is door
        toml.write_text(good)
        status, answer = await _call(s, "POST", run.url + "/api/reload", headers=AUTH)
        assert status == 200 and answer["kept"] == ["yard", "door"], answer
        assert answer["summary"] == f"reload: no change in {toml}"
        # The rate is the one option a running stream takes: each stream changes, none restarts.
        toml.write_text(good.replace("preset = ", "analyze-fps = 4\npreset = "))
        status, answer = await _call(s, "POST", run.url + "/api/reload", headers=AUTH)
        assert answer["changed"] == [{"name": "yard", "what": "rate"},
                                     {"name": "door", "what": "rate"}], answer  # fmt: skip
        assert answer["summary"] == "reload: ~yard (rate), ~door (rate)"
        _, listed = await _call(s, "GET", run.url + "/api/streams", headers=AUTH)
        assert [x["analyze_fps"] for x in listed["streams"]] == [4.0, 4.0]
        assert run.stream("yard") is yard and run.stream("door") is door
        # A new input that cannot be opened: door goes back to its old one, and says why.
        missing = tmp_path / "missing.mp4"
        toml.write_text(toml.read_text().replace(cams.url("cam2"), str(missing)))
        status, answer = await _call(s, "POST", run.url + "/api/reload", headers=AUTH)
        assert status == 200 and answer["summary"] == "reload: !door (failed)", answer
        assert answer["failed"][0]["error"].startswith("its new input cannot run: ")
        assert str(missing) in answer["failed"][0]["error"]
        _, described = await _call(s, "GET", run.url + "/api/streams/door", headers=AUTH)
        assert described["input"] == cams.url("cam2") and described["analyze_fps"] == 4.0
        await wait_until(lambda: run.delivered("door") > 10, 30, "door back on its old input")
        assert (out / "door.keep-1.mp4").exists()  # what it wrote before the attempt
    for stream in (yard, door):
        assert run.longest_stall(stream) < 2.0, (stream.name, run.longest_stall(stream))


async def test_reload_needs_the_token_and_a_file(tmp_path, long_clip, tiny_encoder):
    toml = tmp_path / "run.toml"
    write_config(toml, tmp_path, {"clip": str(long_clip)}, "live = true")
    url = "/api/reload"
    async with aiohttp.ClientSession() as s:
        async with Reloading(toml, tiny_encoder) as run:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                status, answer = await _call(s, "POST", run.url + url, headers=headers)
                assert status == 401 and "token" in answer["error"]
            status, answer = await _call(s, "POST", run.url + url + "?token=" + TOKEN)
            assert status == 200 and answer["kept"] == ["clip"]
        async with Reloading(toml, tiny_encoder, token=None) as run:
            status, answer = await _call(s, "POST", run.url + url)
            assert status == 403 and "--serve-token" in answer["error"]
        async with Reloading(toml, tiny_encoder, reload=False) as run:
            status, answer = await _call(s, "POST", run.url + url, headers=AUTH)
            assert status == 409 and "started without --config" in answer["error"]
            assert "--config FILE" in answer["error"]


@pytest.mark.slow
async def test_a_reload_changes_one_streams_own_settings_live(tmp_path, long_clip, tiny_encoder):
    """A [[sources]] entry gains labels and alerts of its own: that stream takes them from
    its next frame, without a restart; the other stream is untouched. Taken out of the file
    again, the stream has the run's once more."""
    toml, out = tmp_path / "run.toml", tmp_path
    sources = {"yard": str(long_clip), "door": str(long_clip)}
    write_config(toml, out, sources, "live = true")
    own = ('labels = "a cat, a dog"\nalerts = [{query = "anything", alert-threshold = -1, '
           "alert-frames = 1, alert-cooldown = 0}]\n")  # fmt: skip
    async with Reloading(toml, tiny_encoder) as run, aiohttp.ClientSession() as s:
        yard, door = run.stream("yard"), run.stream("door")
        write_config(toml, out, sources, "live = true")
        toml.write_text(toml.read_text() + own, encoding="utf-8")  # door is the last entry
        status, answer = await _call(s, "POST", run.url + "/api/reload", headers=AUTH)
        assert status == 200, answer
        assert answer["changed"] == [{"name": "door", "what": "alerts, labels"}]
        assert answer["kept"] == ["yard"] and answer["failed"] == []
        analysed = door.stats.analysed
        await wait_until(lambda: door.stats.analysed > analysed + 3, 20, "door analysed again")
        rows = read_jsonl(out / "door.jsonl")
        alerts = [r for r in rows if r["type"] == "alert"]
        assert alerts and all(r["query"] == "anything" for r in alerts)
        last = [r for r in rows if r["type"] == "analysis"][-1]
        assert {t["label"] for t in last["tags"]} <= {"a cat", "a dog"}
        write_config(toml, out, sources, "live = true")  # its own settings gone again
        status, answer = await _call(s, "POST", run.url + "/api/reload", headers=AUTH)
        assert answer["changed"] == [{"name": "door", "what": "alerts, labels"}], answer
        pipeline = run.viewer.run
        assert pipeline.alerts.rules_for("door") == ()
        assert pipeline.analyzer.vocabulary_of("door") is pipeline.analyzer.vocabulary
        assert run.stream("yard") is yard and run.stream("door") is door  # neither restarted
    assert not [r for r in read_jsonl(out / "yard.jsonl") if r["type"] == "alert"]
