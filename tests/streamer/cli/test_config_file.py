"""Configuration files: real TOML files through the real `streamer run` option table and CLI."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from media import ffprobe, parse_srt, read_jsonl, video_stream

from streamer.cli import config_file
from streamer.cli.build import Settings, configure, settings
from streamer.cli.main import build_parser, main
from streamer.core.checks import Checked
from streamer.core.options import Option, declared, option
from streamer.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str, name: str = "streamer.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def parse(*argv: object) -> argparse.Namespace:
    return build_parser().parse_args([str(a) for a in argv])


def given(*argv: object) -> Settings:
    """The options a `streamer run` command line gives, with its --config file's."""
    return settings(parse("run", *argv))


CAMERAS = """
crf = 30
analyze_fps = 4                 # underscore form, a number for a string-typed flag
no-llm = true
live = true
alert = ["a dog"]

[outputs]
jsonl = "rec/{stream}.jsonl"
srt = "rec/{stream}.srt"

[llm]
url = "http://localhost:9999/v1"
max-in-flight = 2

[[sources]]
name = "door"
input = "rtsp://viewer:pw@cam1.local/stream"
alert = ["a person at the door", "a parcel"]

[[sources]]
input = "clip.mp4"
"""


def test_file_keys_become_run_options_typed_by_their_flags(tmp_path):
    options = given("--config", write(tmp_path, CAMERAS))
    get = options.get
    assert get("crf") == 30 and get("analyze-fps") == 4.0 and get("no-llm") is True
    assert get("live") is True and get("llm-max-in-flight") == 2
    assert get("llm-url") == "http://localhost:9999/v1"
    assert get("jsonl") == "rec/{stream}.jsonl" and get("srt") == "rec/{stream}.srt"
    assert get("inputs") == ["door=rtsp://viewer:pw@cam1.local/stream", "clip.mp4"]
    config = configure(options)
    assert config.outputs.crf == 30 and config.analysis.analyze_fps == 4.0
    assert config.llm is None and config.live is True


def test_an_archive_table_sets_the_archive_as_its_flags_do(tmp_path):
    text = (
        'inputs = ["clip.mp4"]\nno-llm = true\n[archive]\narchive = "cams"\n'
        'retain = "7d"\nclip-before = "3s"\nindex-every = "30s"\nsummary = true\n'
    )
    config = configure(given("--config", write(tmp_path, text)))
    archive = config.archive
    assert archive.path == "cams" and archive.retain_s == 7 * 86400 and archive.summary
    assert archive.clip_before_s == 3.0 and archive.index_every_s == 30.0
    assert archive.segment_s == 60.0 and archive.max_gb is None  # the defaults, written once


def test_sources_per_stream_alerts_watch_only_their_stream(tmp_path):
    options = given("--config", write(tmp_path, CAMERAS))
    assert options.get("alert") == ["a dog", "door=a person at the door", "door=a parcel"]
    rules = {rule.query: rule.streams for rule in configure(options).alerts}
    assert rules == {"a dog": (), "a person at the door": ("door",), "a parcel": ("door",)}


def test_command_line_overrides_the_file_and_adds_inputs_and_alerts(tmp_path):
    options = given(
        "--crf", "25", "--config", write(tmp_path, CAMERAS), "--no-drop",
        "--alert", "a cat", "--llm-url", "http://other:1/v1", "more.mp4",
    )  # fmt: skip
    get = options.get
    assert get("crf") == 25 and get("llm-url") == "http://other:1/v1"
    assert get("no-drop") is True and get("live") is False  # the flag replaced the file's live
    assert configure(options).live is False
    assert get("inputs") == ["door=rtsp://viewer:pw@cam1.local/stream", "clip.mp4", "more.mp4"]
    assert get("alert") == ["a dog", "door=a person at the door", "door=a parcel", "a cat"]
    assert get("jsonl") == "rec/{stream}.jsonl"  # not given on the command line: the file's


def test_a_command_line_value_equal_to_the_default_still_wins(tmp_path):
    options = given("--config", write(tmp_path, "crf = 30\n"), "--crf", "20", "a.mp4")
    assert options.get("crf") == 20 and "crf" not in options.origins


def test_tables_accept_group_names_and_flag_prefixes(tmp_path):
    text = """
[encoder]
model = "tiny"
[reconnect]
max = 30
attempts = 3
[live-sources]
rtsp_transport = "udp"
"""
    get = given("--config", write(tmp_path, text)).get
    assert get("model") == "tiny" and get("reconnect-max") == 30.0
    assert get("reconnect-attempts") == 3 and get("rtsp-transport") == "udp"


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config_file.load(str(write(tmp_path, text)))
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("crff = 2", ["crff: unknown key", "did you mean 'crf'", "allowed here:", "preset"]),
        ("blah = 1", ["blah: unknown key; allowed here:"]),  # no "did you mean 'batch'"
        # a table's name before its option: the option, not the near spelling 'encoders'
        ('encoder-weights = "x"', ["encoder-weights: unknown key", "did you mean 'weights'"]),
        (
            '[[sources]]\ninput = "a.mp4"\n[[sources]]\nnmae = "b"\ninput = "b.mp4"',
            ["sources[1].nmae: unknown key", "did you mean 'name'", "name, input, alert"],
        ),
        ('[llm]\nulr = "x"', ["llm.ulr: unknown key", "did you mean 'url'", "url, model"]),
        ("[nosuchtable]\nx = 1", ["nosuchtable: unknown key", "[outputs]", "[llm] url"]),
        ('llm = "x"', ["llm = \"x\": llm is a table", "url, model, api-key"]),
        ("crf = 2.5", ["crf = 2.5", "must be a whole number in 0..51, got '2.5'", "--crf"]),
        ('crf = "high"', ['crf = "high"', "must be a whole number in 0..51"]),
        ("crf = [20]", ["crf = [20]", "got a list", "expected a whole number in 0..51"]),
        ('show = "grd"', ['show = "grd"', "must be one of grid, got 'grd'"]),
        ('no-audio = "yes"', ['no-audio = "yes"', "true or false"]),
        ("max-wait-ms = true", ["max-wait-ms = true", "a number"]),
        ("live = true\nno-drop = true", ["no-drop", "live", "exclude each other"]),
        ("crf = 20\n[outputs]\ncrf = 21", ["outputs.crf", "set twice", "at crf"]),
        ('config = "other.toml"', ["config", "cannot name another", "--config"]),
        ('[sources]\ninput = "a.mp4"', ["write [[sources]]"]),
        ('[[sources]]\nname = "door"', ["sources[0].input", "is missing"]),
        ('[[sources]]\ninput = "a.mp4"\nalert = "a dog"', ["sources[0].alert", "add name ="]),
        ('[[sources]]\nname = "front door"\ninput = "a"', ["sources[0].name", "letters, digits"]),
        (
            '[[sources]]\nname = "a"\ninput = "x"\n[[sources]]\nname = "a"\ninput = "y"',
            ["sources[1].name", "already the name of sources[0]"],
        ),
        ("inputs = [1]", ["inputs[0]", "a file, camera or URL"]),
        (
            'name = "x"\ncrf = 2 0',
            ["line 2, column 9", "not valid TOML", "    2 | crf = 2 0", "^"],
        ),
    ],
    ids=[
        "unknown-key", "unknown-key-no-near-one", "table-before-key", "unknown-source-key",
        "unknown-table-key",
        "unknown-table",
        "table-as-value", "float-for-int", "text-for-int", "list-for-int", "choices",
        "switch-as-text", "bool-for-number",
        "exclusive", "twice", "nested-config", "sources-single-table", "source-no-input",
        "alert-without-name", "bad-name", "duplicate-name", "input-not-text", "syntax",
    ],
)  # fmt: skip
def test_every_mistake_names_the_file_the_key_and_what_is_allowed(tmp_path, text, words):
    message = load_error(tmp_path, text)
    assert message.startswith(str(tmp_path / "streamer.toml") + ": ")
    for word in words:
        assert word in message, message


def test_missing_unreadable_and_non_utf8_files_say_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config_file.load(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="is a folder"):
        config_file.load(str(tmp_path))
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('labels = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        config_file.load(str(latin1))


@pytest.mark.parametrize("command", ["run", "config --print"])
def test_a_bad_file_is_a_usage_error_exit_2_without_traceback(tmp_path, capsys, command):
    bad = write(tmp_path, '[[sources]]\nnmae = "x"\ninput = "a.mp4"\n')
    assert main([*command.split(), "--config", str(bad), "a.mp4", "--jsonl", "a.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamer: error: ") and "sources[0].nmae" in err
    assert "Traceback" not in err and "usage:" not in err


def test_print_masks_secrets_and_marks_where_values_came_from(tmp_path, capsys):
    text = CAMERAS + '\n[web-viewer]\nserve = 8080\nserve-token = "tok-SECRET1"\n'
    text = text.replace("[llm]\n", '[llm]\napi-key = "key-SECRET2"\n')
    webhook = "https://user:SECRET3@hooks.example.com/services/T0/SECRET4?token=SECRET5"
    code = main(["config", "--print", "--config", str(write(tmp_path, text)), "--crf", "25",
                 "--webhook", webhook])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "SECRET" not in out and ":pw@" not in out
    assert 'llm-api-key = "***"' in out and 'serve-token = "***"' in out
    assert 'webhook = "https://***@hooks.example.com/***?***"' in out
    assert '"door=rtsp://***@cam1.local/stream"' in out
    assert "crf = 25  # from the command line" in out
    assert 'jsonl = "rec/{stream}.jsonl"  # from the file' in out
    assert "# llm-model: not set" in out
    assert 'serve = "8080"  # from the file' in out


def test_print_marks_a_given_value_even_when_it_equals_the_default(tmp_path, capsys):
    path = write(tmp_path, 'crf = 20\npreset = "slow"\ntop-k = 5\nalert = ["a dog"]\n')
    argv = ["--config", str(path), "--analyze-fps", "2", "--top-k", "3", "--alert", "a cat"]
    assert main(["config", "--print", *argv]) == 0
    out = capsys.readouterr().out
    assert "crf = 20  # from the file" in out  # 20 and 2 and 3 are the defaults
    assert 'preset = "slow"  # from the file' in out
    assert "analyze-fps = 2.0  # from the command line" in out
    assert "top-k = 3  # from the command line" in out  # over the file's 5
    assert 'alert = ["a dog", "a cat"]  # from the file and the command line' in out
    assert re.search(r"^max-batch = \d+$", out, re.M)  # nobody set it: the default, unmarked
    again = given("--config", write(tmp_path, out, "printed.toml"))
    assert {k: again.get(k) for k in ("crf", "preset", "analyze-fps", "top-k", "alert")} == {
        "crf": 20, "preset": "slow", "analyze-fps": 2.0, "top-k": 3, "alert": ["a dog", "a cat"]
    }  # fmt: skip


def test_print_marks_every_value_the_example_file_sets(capsys):
    example = str(REPO / "examples" / "streamer.toml")
    assert main(["config", "--print", "--config", example]) == 0
    out = capsys.readouterr().out
    marked = dict(re.findall(r"^([\w-]+) = .*  # from (the file)$", out, re.M))
    assert set(marked) == set(config_file.load(example).values)
    assert {"alert-threshold", "weights", "encoder", "analyze-fps", "model"} <= set(marked)


def test_printed_configuration_loads_back_to_the_same_options(tmp_path, capsys):
    argv = ["--config", str(write(tmp_path, CAMERAS)), "--no-drop", "--alert", "a cat", "x.mp4"]
    original = given(*argv)
    assert main(["config", "--print", *argv]) == 0
    printed = write(tmp_path, capsys.readouterr().out, "printed.toml")
    again = given("--config", printed)
    keys = [row.option.key for row in config_file.TABLE if row.option.key not in
            ("config", "inputs")]  # fmt: skip
    assert {k: again.get(k) for k in keys} == {k: original.get(k) for k in keys}
    # inputs print with credentials masked; everything else is exactly as it was
    assert again.get("inputs") == ["door=rtsp://***@cam1.local/stream", "clip.mp4", "x.mp4"]


def test_print_without_a_file_shows_defaults_and_flags(capsys):
    assert main(["config", "--print", "--top-k", "5", "a.mp4"]) == 0
    document = tomllib.loads(capsys.readouterr().out)
    assert document["top-k"] == 5 and document["inputs"] == ["a.mp4"]
    assert document["crf"] == 20 and document["no-audio"] is False


def test_check_accepts_a_valid_file_and_rejects_an_unusable_run(tmp_path, capsys):
    good = write(tmp_path, CAMERAS)
    assert main(["config", "--check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "ok: 2 input(s)" in out and "door=rtsp://***@cam1.local/stream" in out
    no_outputs = write(tmp_path, 'inputs = ["a.mp4"]\n', "nothing.toml")
    assert main(["config", "--check", str(no_outputs)]) == 2
    assert "nothing to write" in capsys.readouterr().err
    # flags after the file count too
    assert main(["config", "--check", str(no_outputs), "--jsonl", "a.jsonl"]) == 0


def test_the_example_file_is_valid_and_has_named_cameras_with_alerts(capsys):
    example = REPO / "examples" / "streamer.toml"
    assert main(["config", "--check", str(example)]) == 0
    options = given("--config", example)
    inputs = options.get("inputs")
    assert [spec.split("=", 1)[0] for spec in inputs] == ["door", "yard"]
    assert all(spec.split("=", 1)[1].startswith("rtsp://") for spec in inputs)
    config = configure(options)
    assert {rule.streams for rule in config.alerts} == {("door",)}
    yard = config.stream_settings["yard"]  # its own settings: a whole set of alerts, and more
    assert [a.query for a in yard["alerts"]] == ["a car in the driveway", "a fox"]
    assert yard["captions"] is False and yard["analysis.analyze_fps"] == 1.0
    assert "{stream}" in options.get("output") and options.get("serve")
    assert options.get("llm-url")


def test_readme_configuration_snippets_are_valid():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    snippets = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert snippets
    for snippet in snippets:
        loaded = config_file.from_mapping(tomllib.loads(snippet), "README.md")
        assert loaded.inputs


def _seconds(text: str) -> float:
    if not text.endswith("s"):
        raise ValueError(text)
    return float(text[:-1])


def _mode(text: str) -> str:
    if text not in ("fast", "slow"):
        raise ValueError(text)
    return text


@dataclass(frozen=True)
class NightVision:
    """A section declared tomorrow: its options are keys of a file today."""

    wait: float = option(1.0, Option("--wait", "how long", Checked("a duration in s", _seconds)))
    mode: str = option("fast", Option("--mode", "speed", Checked("fast or slow", _mode)))
    tag: tuple[str, ...] = option((), Option("--tag", "tags", kind="list"))
    loud: bool = option(False, Option("--loud", "louder", kind="switch"))
    colour: bool | None = option(None, Option("--colour", "colour", kind="toggle"))


def test_any_declared_option_is_a_key_typed_by_its_own_check(tmp_path):
    """The file format follows the declarations: an option added tomorrow works in files."""
    rows = list(declared(NightVision, group="night-vision"))
    good = write(tmp_path, 'inputs = ["a"]\nwait = "2.5s"\n[night-vision]\nmode = "slow"\n'
                 'tag = "x"\nloud = true\ncolour = false\n')  # fmt: skip
    loaded = config_file.load(str(good), rows)
    assert loaded.values == {"wait": 2.5, "mode": "slow", "tag": ["x"], "loud": True,
                             "colour": False}  # fmt: skip
    assert loaded.origins["mode"] == "night-vision.mode" and loaded.inputs == ("a",)
    for text, words in [
        ('wait = "3m"', "must be a duration in s, got '3m' (like --wait)"),
        ('mode = "medium"', "must be fast or slow"),
        ("colour = 1", "true or false"),
        ("tag = [[1]]", "got a list; expected a string"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(words)):
            config_file.load(str(write(tmp_path, text, "bad.toml")), rows)


@pytest.mark.slow
@pytest.mark.integration
def test_a_real_run_from_a_config_file_writes_its_outputs(tmp_path, small_clip):
    text = f"""
no-llm = true
no-progress = true
no-cache = true
[encoder]
model = "tiny"
weights = "random"
device = "cpu"
[outputs]
output = "out/{{stream}}.mp4"
srt = "out/{{stream}}.srt"
jsonl = "out/{{stream}}.jsonl"
preset = "ultrafast"
[[sources]]
name = "clip"
input = {str(small_clip)!r}
"""
    (tmp_path / "out").mkdir()
    config = write(tmp_path, text)
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run", "--config", str(config), "--srt", "cli.srt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert video_stream(ffprobe(tmp_path / "out" / "clip.mp4"))["nb_read_frames"] == "50"
    records = read_jsonl(tmp_path / "out" / "clip.jsonl")
    assert [r for r in records if r["type"] == "analysis"]
    assert parse_srt((tmp_path / "cli.srt").read_text())  # the flag replaced the file's srt
    assert not (tmp_path / "out" / "clip.srt").exists()


def test_a_printed_configuration_without_an_archive_still_checks(tmp_path, capsys):
    """`config --print` writes every key, the archive's defaults (segment, retain, ...) too:
    loaded back without `archive` set, they must not read as options given without it."""
    assert main(["config", "--print", "a.mp4", "--jsonl", "a.jsonl"]) == 0
    printed = write(tmp_path, capsys.readouterr().out, "printed.toml")
    assert "segment = 60.0" in printed.read_text()
    assert main(["config", "--check", str(printed)]) == 0, capsys.readouterr().err
    # a value of its own still needs the archive
    changed = write(tmp_path, printed.read_text().replace("segment = 60.0", "segment = 30.0"))
    assert main(["config", "--check", str(changed)]) == 2
    assert "--segment needs --archive DIR" in capsys.readouterr().err


OWN = """
no-llm = true
alert = ["a dog"]
[outputs]
jsonl = "{stream}.jsonl"
[[sources]]
name = "door"
input = "a.mp4"
labels = "person, parcel"
alerts = ["a person", {query = "a parcel", alert-cooldown = 5}]
captions = "off"
analyze_fps = 1
[[sources]]
name = "yard"
input = "b.mp4"
"""


def test_a_sources_entry_carries_its_streams_own_labels_alerts_captions_and_rate(tmp_path):
    config = configure(given("--config", write(tmp_path, OWN)))
    door = config.stream_settings["door"]
    assert set(config.stream_settings) == {"door"}
    assert door["analysis.labels"] == ("person", "parcel") and door["captions"] is False
    assert door["analysis.analyze_fps"] == 1.0
    assert [(a.query, a.settings) for a in door["alerts"]] == [
        ("a person", {}),
        ("a parcel", {"cooldown_s": 5.0}),
    ]
    assert [rule.query for rule in config.alerts] == ["a dog"]  # the run's own: unchanged


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('labels = "a, b"', ["sources[0].labels", "need its name"]),
        ('name = "d"\nlabels = []', ["sources[0].labels: no label given"]),
        ('name = "d"\nlabels = "labels.txt"', ["sources[0].labels", "looks like a file"]),
        ('name = "d"\ncaptions = "maybe"', ["sources[0].captions", '"on" or "off"']),
        ('name = "d"\nanalyze-fps = -1', ["sources[0].analyze-fps", "--analyze-fps"]),
        ('name = "d"\nalerts = "a dog"', ["sources[0].alerts", "array of queries"]),
        ('name = "d"\nalerts = [{query = "x", alert-frames = 0}]',
         ["sources[0].alerts[0].alert-frames", "--alert-frames"]),
        ('name = "d"\nalert = ["x"]\nalerts = ["y"]', ["sources[0].alerts", "not both"]),
    ],
)  # fmt: skip
def test_a_streams_own_setting_is_refused_as_the_stream_api_refuses_it(tmp_path, entry, words):
    message = load_error(tmp_path, f'[[sources]]\ninput = "a.mp4"\n{entry}\n')
    assert message.startswith(str(tmp_path / "streamer.toml") + ": ")
    for word in words:
        assert word in message, message


@pytest.mark.integration
async def test_a_streams_own_settings_apply_from_its_first_frame(
    tmp_path, small_clip, tiny_encoder
):
    from streamer.pipeline import run_pipeline

    text = f"""
no-llm = true
[outputs]
jsonl = "{tmp_path}/{{stream}}.jsonl"
[[sources]]
name = "door"
input = "{small_clip}"
labels = "a parcel, a cat"
alerts = [{{query = "anything", alert-threshold = -1, alert-frames = 1, alert-cooldown = 0}}]
captions = "off"
analyze-fps = 1
[[sources]]
name = "yard"
input = "{small_clip}"
"""
    config = configure(given("--config", write(tmp_path, text)))
    await run_pipeline(config, encoder=tiny_encoder)
    door, yard = (read_jsonl(tmp_path / f"{name}.jsonl") for name in ("door", "yard"))
    analysed = [r for r in door if r["type"] == "analysis"]
    assert [r["pts"] for r in analysed] == [0.0, 1.0]  # 1 a second from the first frame
    assert {t["label"] for r in analysed for t in r["tags"]} <= {"a parcel", "a cat"}
    assert not [r for r in door if r["type"] == "caption"]
    assert len([r for r in door if r["type"] == "alert"]) == len(analysed)
    assert [r for r in yard if r["type"] == "caption"] and not [
        r for r in yard if r["type"] == "alert"
    ]
    assert len([r for r in yard if r["type"] == "analysis"]) == 4  # the run's 2 a second


def test_a_printed_configuration_keeps_the_streams_own_settings(tmp_path, capsys):
    original = configure(given("--config", write(tmp_path, OWN)))
    assert main(["config", "--print", "--config", str(tmp_path / "streamer.toml")]) == 0
    printed = write(tmp_path, capsys.readouterr().out, "printed.toml")
    again = configure(given("--config", printed))
    assert sorted(again.inputs) == sorted(original.inputs)  # those with settings come last
    assert again.stream_settings == original.stream_settings
