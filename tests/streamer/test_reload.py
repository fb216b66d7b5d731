"""Reloading `--config` (`streamer.reload`): what a new reading changes, read by the real
configuration reader; the outcome's words; the outputs a restarted stream keeps; SIGHUP."""

import asyncio
import os
import signal

import pytest

from streamer.cli.build import configure, settings
from streamer.cli.main import build_parser
from streamer.cli.run import reloader_for, run_with_signals
from streamer.errors import ConfigError
from streamer.outputs.keep import keep_outputs
from streamer.reload import Outcome, Reading, compare
from streamer.sources import stream_names


def _write(path, sources: dict[str, str], extra: str = "") -> None:
    entries = "".join(f'[[sources]]\nname = "{n}"\ninput = "{s}"\n' for n, s in sources.items())
    path.write_text(f'jsonl = "{{stream}}.jsonl"\n{extra}\n{entries}', encoding="utf-8")


def _read(*argv: str) -> Reading:
    given = settings(build_parser().parse_args(["run", *argv]))
    return Reading(configure(given), given.values)


def _changes(first: Reading, new: Reading):
    streams = dict(stream_names(first.config.inputs))
    return compare(streams, first.config.analysis.analyze_fps, first.options, new)


def test_the_file_s_streams_are_diffed_and_the_command_line_s_kept(tmp_path):
    toml = tmp_path / "run.toml"
    _write(toml, {"door": "rtsp://cam/1", "yard": "rtsp://cam/2", "gate": "rtsp://cam/3"})
    first = _read("--config", str(toml), "hall=rtsp://cam/9")
    _write(toml, {"door": "rtsp://cam/1", "yard": "rtsp://cam/7", "shed": "rtsp://cam/4"})
    changes = _changes(first, _read("--config", str(toml), "hall=rtsp://cam/9"))
    assert changes.added == {"shed": "rtsp://cam/4"}
    assert changes.removed == ["gate"]
    assert changes.replaced == {"yard": "rtsp://cam/7"}
    assert changes.kept == ["door", "hall"]  # hall: the command line's, in every reading
    assert changes.ignored == []


def test_a_changed_rate_is_applied_and_other_options_are_named_for_the_next_start(tmp_path):
    toml = tmp_path / "run.toml"
    _write(toml, {"door": "rtsp://cam/1"}, 'analyze-fps = 2\nencoder = "clip"')
    first = _read("--config", str(toml), "--top-k", "3")
    extra = 'analyze-fps = 4\nencoder = "dinov2"\nserve = "8080"\n[llm]\nurl = "http://h:1/v1"'
    _write(toml, {"door": "rtsp://cam/1"}, extra)
    changes = _changes(first, _read("--config", str(toml), "--top-k", "3"))
    assert changes.rate == 4.0 and changes.kept == ["door"]
    assert changes.ignored == ["encoder", "serve", "llm-url"]  # named by the keys written
    # The command line wins over the file: a file's change it overrides is no change.
    _write(toml, {"door": "rtsp://cam/1"}, 'analyze-fps = 2\nencoder = "clip"\ntop-k = 9')
    assert _changes(first, _read("--config", str(toml), "--top-k", "3")).ignored == []


@pytest.mark.parametrize(
    ("text", "words"),
    [('[[sources]]\nname = "door"\ninput = "rtsp://cam/1"\nnmae = 2', "unknown key"),
     ('analyze-fps = 0\n[[sources]]\ninput = "x"', "analyze-fps = 0: must be a number"),
     ('[[sources]\nname = "door"', "not valid TOML")],
)  # fmt: skip
def test_a_file_that_does_not_read_fails_the_reading_as_it_fails_the_start(tmp_path, text, words):
    toml = tmp_path / "run.toml"
    _write(toml, {"door": "rtsp://cam/1"})
    reloader = reloader_for(*_parsed("--config", str(toml)))
    toml.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as at_start:
        _read("--config", str(toml))
    assert words in str(at_start.value)
    with pytest.raises(ConfigError) as reloading:
        reloader._read()
    assert str(reloading.value) == str(at_start.value)


def _parsed(*argv: str):
    args = build_parser().parse_args(["run", *argv])
    given = settings(args)
    return args, given, configure(given)


def test_only_a_one_process_run_with_a_file_has_a_reloader(tmp_path):
    toml = tmp_path / "run.toml"
    _write(toml, {"door": "rtsp://cam/1"})
    assert reloader_for(*_parsed("--config", str(toml))).path == str(toml)
    assert reloader_for(*_parsed("door=rtsp://cam/1", "--jsonl", "a.jsonl")) is None
    assert reloader_for(*_parsed("--config", str(toml), "--cluster", "auto")) is None


def test_the_outcome_says_what_changed_in_one_line():
    ignored = ["encoder: changed in the file; takes effect at the next start"]
    outcome = Outcome("run.toml", added=["gate"], removed=["yard"], kept=["hall"],
                      changed=[("door", "input"), ("hall2", "rate")], ignored=ignored)  # fmt: skip
    assert outcome.line() == (
        "reload: +gate, -yard, ~door (input), ~hall2 (rate); 1 option(s) changed for the next start"
    )
    assert Outcome("run.toml", ignored=ignored).line() == (
        "reload: no stream changed; 1 option(s) changed for the next start"
    )
    answer = outcome.as_dict()
    assert answer["changed"] == [{"name": "door", "what": "input"},
                                 {"name": "hall2", "what": "rate"}]  # fmt: skip
    assert answer["summary"] == outcome.line() and answer["failed"] == []
    assert Outcome("run.toml").line() == "reload: no change in run.toml"


def test_a_restarted_stream_s_outputs_are_kept_beside_the_new_ones(tmp_path):
    video, jsonl = tmp_path / "door.mp4", tmp_path / "door.jsonl"
    (tmp_path / "door.keep-1.mp4").write_bytes(b"older")
    video.write_bytes(b"video")
    jsonl.write_text("rows")
    (tmp_path / "door.vtt").write_text("")  # nothing in it: not worth keeping
    keep_outputs("door", [str(video), str(jsonl), str(tmp_path / "door.srt"),
                          str(tmp_path / "door.vtt")])  # fmt: skip
    assert not video.exists() and not jsonl.exists()
    assert not list(tmp_path.glob("door.keep-*.vtt"))
    assert (tmp_path / "door.keep-2.mp4").read_bytes() == b"video"  # keep-1 was taken
    assert (tmp_path / "door.keep-2.jsonl").read_text() == "rows"
    assert (tmp_path / "door.keep-1.mp4").read_bytes() == b"older"


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on Windows")
def test_sighup_calls_the_hangup_and_the_run_goes_on_and_still_stops_on_sigint():
    hangups: list[int] = []
    received: list[int] = []

    async def run(stop: asyncio.Event) -> str:
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
        while len(hangups) < 2:
            await asyncio.sleep(0.01)
        assert not stop.is_set()  # a SIGHUP does not stop the run
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(stop.wait(), 5)
        return "stopped"

    assert run_with_signals(run, received, lambda: hangups.append(1)) == "stopped"
    assert received == [signal.SIGINT]  # a SIGHUP is no stop: not in the exit code
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # the handler went with the run


def test_the_reload_route_is_documented_with_its_answer_and_its_refusals():
    from streamer.watch.web.stream_api import openapi

    operation = openapi()["paths"]["/api/reload"]["post"]
    assert operation["security"] == [{"token": []}]  # a change: the token, always
    assert {"400", "401", "403", "409", "501"} <= set(operation["responses"])
    assert "--config" in operation["responses"]["409"]["description"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    outcome = Outcome("run.toml", added=["gate"], changed=[("door", "input")],
                      failed=[("yard", "cannot open")])  # fmt: skip
    assert set(schema["properties"]) == set(outcome.as_dict())
    jsonschema = pytest.importorskip("jsonschema")  # not a dependency: checked where it is
    jsonschema.validate(outcome.as_dict(), schema)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on Windows")
def test_without_a_file_to_re_read_a_sighup_stops_the_run_as_sigterm_does():
    """No --config (no hangup given): a closed terminal's SIGHUP is a graceful stop, counted
    in the exit code, not the default action that would kill the process mid-write."""
    received: list[int] = []

    async def run(stop: asyncio.Event) -> str:
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(stop.wait(), 5)
        return "stopped"

    assert run_with_signals(run, received) == "stopped"
    assert received == [signal.SIGHUP]
