"""Every bad value of a `streamer run` option is refused in the words the user wrote it in.

On the command line the error names the flag, in a configuration file the key path; both give
the bad value and what is allowed, and both come before anything else is checked (a run with
no output still hears about its bad value first). The list of options is read from the option
table itself, so an option declared without a check fails here until it gets one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import config_file
from streamer.cli.build import configure, settings
from streamer.cli.main import build_parser, main
from streamer.cli.options import TABLE, by_key
from streamer.cli.run import config_from_args
from streamer.config import RunConfig
from streamer.errors import ConfigError

# Options whose values are free text (paths, names, queries, prompts, secrets): nothing to range.
FREE_TEXT = {
    "--sources", "--config", "--output", "--srt", "--vtt", "--jsonl", "--model", "--weights",
    "--labels", "--llm-model", "--llm-api-key", "--prompt", "--system-prompt", "--alert",
    "--webhook", "--serve-token", "--archive", "--mqtt-client-id", "--mqtt-ca", "--calibrate",
}  # fmt: skip

# Every other option that takes a value: a bad value, and words its error uses for what is allowed.
BAD = {
    "--preset": ("quick", ["one of ultrafast, superfast", "placebo"]),
    "--crf": ("99", ["a whole number in 0..51"]),
    "--encoder": ("nope", ["one of clip, dinov2, default"]),
    "--device": ("gpu", ["cpu, cuda or cuda:N"]),
    "--precision": ("fp8", ["one of auto, fp32, fp16, bf16"]),
    "--backend": ("onnx", ["one of auto, torch, onnxruntime, openvino"]),
    "--analyze-fps": ("-2", ["a number of frames per second > 0, or 'all'"]),
    "--max-batch": ("0", ["a whole number ≥ 1"]),
    "--max-wait-ms": ("-1", ["a number of milliseconds ≥ 0"]),
    "--batch-ceiling": ("0", ["a whole number ≥ 1"]),
    "--latency-budget-ms": ("0", ["a number of milliseconds > 0"]),
    "--label-prompt": ("a photo", ["'{label}'"]),
    "--top-k": ("0", ["a whole number ≥ 1"]),
    "--caption-interval": ("-3", ["a number of seconds ≥ 0"]),
    "--caption-max-age": ("-1", ["a number of seconds ≥ 0"]),
    "--scene-threshold": ("7", ["a cosine distance > 0 and ≤ 2"]),
    "--llm-url": ("localhost:1234/v1", ["an http:// or https:// URL"]),
    "--llm-max-in-flight": ("0", ["a whole number ≥ 1"]),
    "--llm-timeout": ("0", ["a number of seconds > 0"]),
    "--llm-first-timeout": ("-5", ["a number of seconds > 0"]),
    "--llm-max-tokens": ("5000", ["a whole number in 1..4096"]),
    "--caption-wait": ("-1", ["a number of seconds ≥ 0"]),
    "--status-every": ("0", ["a number of seconds > 0"]),
    "--show": ("grd", ["grid"]),
    "--alert-threshold": ("1.5", ["a cosine similarity in -1..1"]),
    "--alert-frames": ("0", ["a whole number ≥ 1"]),
    "--alert-cooldown": ("-2", ["a number of seconds ≥ 0"]),
    "--serve": ("host:99999", ["[HOST:]PORT with PORT in 0..65535"]),
    "--rtsp-transport": ("http", ["one of tcp, udp"]),
    "--open-timeout": ("0", ["a number of seconds > 0"]),
    "--read-timeout": ("-1", ["a number of seconds > 0"]),
    "--reconnect-initial": ("-1", ["a number of seconds > 0"]),
    "--reconnect-max": ("0", ["a number of seconds > 0"]),
    "--reconnect-attempts": ("0", ["a whole number ≥ 1"]),
    "--hwaccel": ("vaapi", ["none", "cuda", "auto"]),
    "--decode-workers": ("-1", ["a whole number ≥ 0 or 'auto'"]),
    "--queue-frames": ("1", ["a whole number ≥ 2"]),
    "--segment": ("1x", ["a duration > 0 s, e.g. 60s, 10m, 2h, 7d"]),
    "--retain": ("0d", ["a duration > 0 s"]),
    "--archive-max-gb": ("-5", ["a number of GB > 0"]),
    "--index-every": ("soon", ["a duration > 0 s"]),
    "--clip-before": ("0", ["a duration > 0 s"]),
    "--clip-after": ("-5s", ["a duration > 0 s"]),
    "--summary-every": ("0s", ["a duration > 0 s"]),
    "--cluster": ("head", ["auto, ray://HOST:PORT", "or HOST:PORT"]),
    "--encoders": ("0", ["a whole number ≥ 1"]),
    "--encoder-cpus": ("0", ["a number of CPUs > 0"]),
    "--shards-per-node": ("0", ["a whole number ≥ 1"]),
    "--in-flight": ("0", ["a whole number ≥ 1"]),
    "--files-per-shard": ("0", ["a whole number ≥ 1"]),
    "--pin": ("door", ["STREAM=RESOURCE or STREAM=KEY=VALUE"]),
    "--mqtt": ("http://x", ["an mqtt:// or mqtts:// URL with a host"]),
    "--mqtt-prefix": ("a/#", ["an MQTT topic without wildcards (+, #)"]),
    "--mqtt-discovery-prefix": ("+x", ["an MQTT topic without wildcards (+, #)"]),
    "--mqtt-image-every": ("-1", ["a number of seconds ≥ 0"]),
    "--mqtt-status-every": ("0", ["a number of seconds ≥ 1"]),
    "--mqtt-queue": ("0", ["a whole number ≥ 1"]),
}
CASES = [pytest.param(flag, bad, allowed, id=flag) for flag, (bad, allowed) in BAD.items()]


def value_options() -> dict[str, object]:
    """The options that take a value (switches take none), by flag, from the option table."""
    return {row.option.flag: row.option for row in TABLE
            if row.option.takes_value and row.option.kind != "positional"}  # fmt: skip


def test_every_option_that_takes_a_value_is_checked_or_free_text():
    options = value_options()
    unchecked = sorted(
        flag for flag, opt in options.items() if flag not in FREE_TEXT and opt.check is None
    )
    assert not unchecked, (
        f"give {unchecked} a check from streamer.core.checks, or, for free text, add them to "
        "FREE_TEXT"
    )
    assert all(options[flag].check is None for flag in FREE_TEXT), "free text is text"
    assert set(BAD) == set(options) - FREE_TEXT, "BAD needs a bad value for every checked option"


@pytest.mark.parametrize(("flag", "bad", "allowed"), CASES)
def test_a_bad_flag_exits_2_naming_the_flag_the_value_and_what_is_allowed(
    capsys, flag, bad, allowed
):
    with pytest.raises(SystemExit) as caught:  # no output given: the bad value is what is said
        build_parser().parse_args(["run", "clip.mp4", f"{flag}={bad}"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and repr(bad) in err, err
    assert all(words in err for words in allowed), err


def toml_value(text: str) -> str:
    """`text` as the TOML a user would write: a number where it is one, else a string."""
    try:
        float(text)
    except ValueError:
        return json.dumps(text)
    return text


@pytest.mark.parametrize(("flag", "bad", "allowed"), CASES)
def test_a_bad_file_value_names_the_key_path_the_value_and_what_is_allowed(
    tmp_path, flag, bad, allowed
):
    row = by_key()[flag[2:]]
    key = row.option.key
    where = f"{row.group}.{key}" if row.group else key  # [table] key = ...
    if row.option.kind == "list":  # a repeatable option's value is its list's first item
        where += "[0]"
    value = toml_value(bad)
    table = f"[{row.group}]\n" if row.group else ""
    path = tmp_path / "streamer.toml"
    path.write_text(f'inputs = ["clip.mp4"]\n{table}{key} = {value}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        config_file.load(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: {where} = {value}: "), message
    assert message.endswith(f"(like {flag})"), message
    assert all(words in message for words in allowed), message


def test_a_value_of_the_wrong_toml_type_is_told_what_the_option_takes(tmp_path):
    path = tmp_path / "streamer.toml"
    path.write_text("[analysis]\nmax-batch = [8]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"analysis\.max-batch = \[8\]: got a list; expected "
                       "a whole number ≥ 1"):  # fmt: skip
        config_file.load(str(path))


def test_good_values_are_converted_as_the_run_uses_them():
    args = build_parser().parse_args([
        "run", "clip.mp4", "--jsonl", "a.jsonl", "--analyze-fps", "ALL", "--encoder", "CLIP",
        "--precision", "FP16", "--preset", "UltraFast", "--rtsp-transport", "UDP",
        "--device", "cuda:1", "--caption-max-age", "inf", "--decode-workers", "Auto",
        "--crf", "0", "--scene-threshold", "2", "--alert-threshold", "-1", "--serve", "[::1]:0",
    ])  # fmt: skip
    assert (args.analyze_fps, args.encoder, args.precision) == ("all", "clip", "fp16")
    assert (args.preset, args.rtsp_transport, args.device) == ("ultrafast", "udp", "cuda:1")
    assert (args.caption_max_age, args.decode_workers, args.crf) == (float("inf"), "auto", 0)
    config = config_from_args(args)
    assert config.analysis.analyze_fps is None and config.serve.host == "::1"
    assert config.captions.scene_threshold == 2.0 and config.sources.rtsp_transport == "udp"
    fps = build_parser().parse_args(["run", "clip.mp4", "--analyze-fps", "2.5"]).analyze_fps
    assert fps == 2.5


def test_the_llm_s_timeouts_and_token_budget_reach_its_client(tmp_path):
    argv = ["run", "clip.mp4", "--jsonl", "a.jsonl", "--llm-timeout", "8",
            "--llm-first-timeout", "300", "--llm-max-tokens", "120"]  # fmt: skip
    llm = config_from_args(build_parser().parse_args(argv)).llm
    assert (llm.read_timeout, llm.first_request_timeout, llm.max_tokens) == (8.0, 300.0, 120)
    path = tmp_path / "run.toml"
    path.write_text(
        'inputs = ["clip.mp4"]\njsonl = "a.jsonl"\n[llm]\ntimeout = 8\nmax-tokens = 9\n'
    )
    llm = config_from_args(build_parser().parse_args(["run", "--config", str(path)])).llm
    assert (llm.read_timeout, llm.first_request_timeout, llm.max_tokens) == (8.0, 120.0, 9)


# Checks between two flags: made after parsing, in the flags' names, still before the outputs.
PAIRS = [
    pytest.param(
        ["--adaptive-batch", "--max-batch", "16", "--batch-ceiling", "8"],
        "--batch-ceiling 8 must be ≥ --max-batch 16 with --adaptive-batch; raise --batch-ceiling "
        "or lower --max-batch", id="batch-ceiling",
    ),
    pytest.param(
        ["--adaptive-batch", "--max-wait-ms", "200", "--latency-budget-ms", "200"],
        "--latency-budget-ms 200 must be > --max-wait-ms 200 with --adaptive-batch",
        id="latency-budget",
    ),
    pytest.param(
        ["--caption-interval", "5", "--caption-max-age", "3"],
        "--caption-max-age 3 must be ≥ --caption-interval 5", id="caption-max-age",
    ),
    pytest.param(
        ["--reconnect-initial", "20", "--reconnect-max", "10"],
        "--reconnect-max 10 must be ≥ --reconnect-initial 20", id="reconnect-max",
    ),
    pytest.param(
        ["--model", "ViT-Q/99"], "--model 'ViT-Q/99': unknown clip model", id="model",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), PAIRS)
def test_flags_that_disagree_are_named_together(argv, message):
    args = build_parser().parse_args(["run", "clip.mp4", *argv])  # no output, on purpose
    with pytest.raises(ConfigError) as caught:
        config_from_args(args)
    assert message in str(caught.value)


def test_the_pairs_are_only_checked_where_they_apply():
    lone = ["--max-batch", "16", "--batch-ceiling", "8", "--max-wait-ms", "300"]  # not adaptive
    config = config_from_args(build_parser().parse_args(["run", "c.mp4", "--jsonl", "a", *lone]))
    assert config.analysis.batch.max_batch == 16
    equal = ["--caption-interval", "4", "--caption-max-age", "4", "--reconnect-initial", "3",
             "--reconnect-max", "3"]  # fmt: skip
    config = config_from_args(build_parser().parse_args(["run", "c.mp4", "--jsonl", "a", *equal]))
    assert config.captions.max_age == 4.0 and config.sources.reconnect.cap == 3.0


def test_flags_that_disagree_in_a_file_are_named_with_their_keys(tmp_path, capsys):
    path = tmp_path / "cams.toml"
    path.write_text('inputs = ["clip.mp4"]\nadaptive-batch = true\n[analysis]\nmax-batch = 16\n'
                    "batch-ceiling = 8\n", encoding="utf-8")  # fmt: skip
    assert main(["config", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamer: error: {path}: ")
    assert (
        "--batch-ceiling 8 (file key analysis.batch-ceiling) must be ≥ --max-batch 16 (file key "
        "analysis.max-batch) with --adaptive-batch (file key adaptive-batch)"
    ) in err
    # the command line overrides one of them: it is named as a flag only
    assert main(["config", "--check", str(path), "--batch-ceiling", "4"]) == 2
    assert (
        "--batch-ceiling 4 must be ≥ --max-batch 16 (file key analysis" in capsys.readouterr().err
    )


def test_config_check_also_checks_an_open_clip_tag_a_run_leaves_to_its_start(tmp_path, capsys):
    """`run` reads open_clip names from their config files and checks the tag when the model
    is built (no open_clip import at start); `config --check` checks the tag too."""
    path = tmp_path / "cams.toml"
    path.write_text('inputs = ["clip.mp4"]\njsonl = "out.jsonl"\nmodel = "ViT-B-32:nope"\n',
                    encoding="utf-8")  # fmt: skip
    given = settings(build_parser().parse_args(["run", "--config", str(path)]))
    assert configure(given).encoder.model == "ViT-B-32:nope"  # what `run` checks up front
    assert main(["config", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--model 'ViT-B-32:nope' (file key model): unknown pretrained tag 'nope'" in err
    assert "laion2b_s34b_b79k" in err  # the valid tags are listed
    path.write_text('inputs = ["clip.mp4"]\njsonl = "out.jsonl"\n'
                    'model = "ViT-B-32:laion2b_s34b_b79k"\n', encoding="utf-8")  # fmt: skip
    assert main(["config", "--check", str(path)]) == 0


def test_a_bad_value_in_a_file_without_outputs_is_reported_before_the_missing_output(
    tmp_path, capsys
):
    path = tmp_path / "cams.toml"
    path.write_text('inputs = ["clip.mp4"]\n[llm]\nmax-in-flight = 0\n', encoding="utf-8")
    assert main(["config", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: llm.max-in-flight = 0: must be a whole number ≥ 1" in err
    assert "--llm-max-in-flight" in err and "nothing to write" not in err
    path.write_text('inputs = ["clip.mp4"]\nllm-max-in-flight = 2\n', encoding="utf-8")
    assert main(["config", "--check", str(path)]) == 2  # good values: now the output is missing
    assert "nothing to write" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fields", "words"),
    [({"queue_frames": 1}, "queue_frames must be a whole number ≥ 2, got 1 (--queue-frames)"),
     ({"llm_max_in_flight": 0},
      "llm_max_in_flight must be a whole number ≥ 1, got 0 (--llm-max-in-flight)"),
     ({"status_every": 0}, "status_every must be a number of seconds > 0, got 0 (--status-every)")],
)  # fmt: skip
def test_the_python_api_reports_a_bad_value_before_the_missing_output(fields, words):
    with pytest.raises(ConfigError) as caught:
        RunConfig(input="clip.mp4", **fields)
    assert words in str(caught.value)


def streamer(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamer", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_the_command_refuses_a_bad_flag_and_a_bad_file_value_with_exit_2(tmp_path):
    done = streamer("run", "--max-batch", "0", "x.mp4", cwd=tmp_path)
    assert done.returncode == 2
    assert "argument --max-batch: must be a whole number ≥ 1, got '0'" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "cams.toml").write_text(
        'inputs = ["x.mp4"]\n[live-sources]\nreconnect-initial = -1\n', encoding="utf-8"
    )
    done = streamer("config", "--check", "cams.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "streamer: error: cams.toml: live-sources.reconnect-initial = -1: must be a number of "
        "seconds > 0, got '-1' (like --reconnect-initial)\n"
    )


# --- `streamer streams`: its own options with a check, and those it borrows from `run` -------

# Each checked option of `streamer streams ACTION`: (action, bad value, what is allowed).
STREAMS_BAD = {
    "--server": ("list", "127.0.0.1:8080", ["an http:// or https:// URL with a host"]),
    "--rate": ("set", "0", ["a number of frames per second > 0, or 'all'"]),
    "--captions": ("set", "maybe", ["one of on, off"]),
    "--alert-threshold": ("add", "2", ["a cosine similarity in -1..1"]),
    "--alert-frames": ("set", "0", ["a whole number ≥ 1"]),
    "--alert-cooldown": ("add", "-1", ["a number of seconds ≥ 0"]),
}
_STREAMS_ARGS = {"list": [], "rm": ["door"], "set": ["door"], "add": ["door=rtsp://cam/1"]}


def streams_checked_options() -> set[str]:
    """Every option of `streamer streams`' actions whose value has a check."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    streams = commands.choices["streams"]
    actions = next(a for a in streams._actions if isinstance(a, argparse._SubParsersAction))
    return {
        flag for sub in actions.choices.values() for action in sub._actions
        if action.type is not None for flag in action.option_strings
    }  # fmt: skip


def test_every_checked_option_of_streams_has_a_bad_value_here():
    assert streams_checked_options() == set(STREAMS_BAD)


@pytest.mark.parametrize(
    ("flag", "action", "bad", "allowed"),
    [pytest.param(flag, *case, id=flag) for flag, case in STREAMS_BAD.items()],
)
def test_a_bad_streams_value_exits_2_naming_the_flag_before_the_server_is_asked(
    capsys, flag, action, bad, allowed
):
    argv = ["streams", action, *_STREAMS_ARGS[action], f"{flag}={bad}"]
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--server", "http://127.0.0.1:9"] if flag != "--server" else argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and repr(bad) in err, err
    assert all(words in err for words in allowed), err


def test_calibrate_without_int8_says_it_does_nothing(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="streamer"):
        alone = config_from_args(
            build_parser().parse_args(["run", "c.mp4", "--jsonl", "a", "--calibrate", "x"])
        )
        config_from_args(
            build_parser().parse_args(
                ["run", "c.mp4", "--jsonl", "a", "--int8", "--calibrate", "x"]
            )
        )
    warned = [r.getMessage() for r in caplog.records if "--calibrate" in r.getMessage()]
    assert len(warned) == 1 and "does nothing without --int8" in warned[0]
    assert not alone.encoder.int8


@pytest.mark.parametrize(
    ("argv", "inputs", "show"),
    [
        (["--show", "a.mp4"], ["a.mp4"], True),  # was: "--show: must be one of grid"
        (["--show", "a.mp4", "b.mp4"], ["a.mp4", "b.mp4"], True),
        (["--show", "grid", "a.mp4"], ["a.mp4"], "grid"),
        (["a.mp4", "--show"], ["a.mp4"], True),
        (["--show", "GRID", "a.mp4"], ["a.mp4"], "grid"),
    ],
)
def test_an_input_after_a_flag_whose_value_is_optional_is_an_input(argv, inputs, show):
    from streamer.cli.flags import optional_values_apart

    args = build_parser().parse_args(optional_values_apart(["run", *argv, "--jsonl", "x"]))
    assert (args.inputs, args.show) == (inputs, show)  # (a window needs a display: not built)


def test_the_command_reads_an_input_after_show_as_an_input(tmp_path, capsys):
    # (argparse exited: "--show: must be one of grid, got '...mp4'")
    with contextlib.suppress(SystemExit):
        main(["run", "--show", str(tmp_path / "missing.mp4")])
    err = capsys.readouterr().err
    assert "one of grid" not in err, err  # (the next complaint: a window, or the input)


def test_a_prompt_may_be_a_file_and_a_missing_file_is_no_prompt(tmp_path):
    kept = tmp_path / "caption.txt"
    kept.write_text("Say what {stream} shows at {time}.\n", encoding="utf-8")
    run = ["run", "clip.mp4", "--jsonl", str(tmp_path / "a.jsonl"), "--prompt"]
    args = build_parser().parse_args([*run, str(kept)])
    assert config_from_args(args).llm.prompt == "Say what {stream} shows at {time}."
    # A typo in the file's path was sent to the LLM as the prompt itself.
    for missing in (str(tmp_path / "captoin.txt"), "prompts/caption.txt", "caption.md"):
        with pytest.raises(ConfigError, match="looks like a file, but there is no such file"):
            config_from_args(build_parser().parse_args([*run, missing]))
    for words in ("Describe the scene.", "Describe.", "{tags}", "Yes or no: a dog in {tags}?"):
        assert config_from_args(build_parser().parse_args([*run, words])).llm.prompt == words
