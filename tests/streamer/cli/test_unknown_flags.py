"""A mistyped flag: the command that was given it refuses it with its own usage line and the
flag it likely means, chosen by the rule a configuration file's unknown keys get; exit 2."""

from __future__ import annotations

import pytest

from streamer.cli import config_file
from streamer.cli.main import main
from streamer.errors import ConfigError


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """What `streamer ARGV` writes to stderr; it must exit 2 (bad usage)."""
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "prog", "message"),
    [
        (["run", "clip.mp4", "--jsnl", "x.jsonl"], "streamer run",
         "unknown option --jsnl: did you mean --jsonl?"),
        (["run", "clip.mp4", "--analyse-fps", "1"], "streamer run",  # the README's spelling
         "unknown option --analyse-fps: did you mean --analyze-fps?"),
        (["run", "clip.mp4", "--jsnol=x.jsonl"], "streamer run",
         "unknown option --jsnol: did you mean --jsonl?"),
        (["run", "clip.mp4", "--JSONL", "x.jsonl"], "streamer run",
         "unknown option --JSONL: did you mean --jsonl?"),
        (["config", "--print", "--crff", "3"], "streamer config",
         "unknown option --crff: did you mean --crf?"),
        (["search", "--archive", "a", "--jsno", "a dog"], "streamer search",
         "unknown option --jsno: did you mean --json?"),
        (["ask", "--archive", "a", "--no-lm", "what?"], "streamer ask",
         "unknown option --no-lm: did you mean --no-llm?"),
        (["serve", "--archive", "a", "--serve-tokn", "t"], "streamer serve",
         "unknown option --serve-tokn: did you mean --serve-token?"),
        (["archive", "prune", "a", "--retian", "1d"], "streamer archive prune",
         "unknown option --retian: did you mean --retain?"),
        (["streams", "list", "--servr", "http://x"], "streamer streams list",
         "unknown option --servr: did you mean --server?"),
        (["encoders", "info", "--modle", "tiny"], "streamer encoders info",
         "unknown option --modle: did you mean --model?"),
        (["bench", "pipeline", "--secnds", "2"], "streamer bench pipeline",
         "unknown option --secnds: did you mean --seconds?"),
        (["llm-check", "--ulr", "http://x"], "streamer llm-check",
         "unknown option --ulr: did you mean --url?"),
        (["sample", "--cache-dri", "x"], "streamer sample",
         "unknown option --cache-dri: did you mean --cache-dir?"),
        (["--verbsoe", "run", "clip.mp4"], "streamer",
         "unknown option --verbsoe: did you mean --verbose?"),
    ],
)  # fmt: skip
def test_a_mistyped_flag_is_refused_by_its_command_with_the_flag_it_means(
    capsys, argv, prog, message
) -> None:
    err = refused(capsys, argv)
    assert err.startswith(f"usage: {prog} ")
    assert err.endswith(f"\n{prog}: error: {message}\n")


def test_no_hint_for_a_word_that_only_shares_a_few_letters(capsys) -> None:
    err = refused(capsys, ["run", "clip.mp4", "--blah", "3", "-x"])
    assert err.endswith("\nstreamer run: error: unknown option --blah; unknown option -x\n")


def test_stray_words_are_named_with_the_commands_usage(capsys) -> None:
    err = refused(capsys, ["archive", "info", "a", "b", "-", "--", "-1"])
    assert err.startswith("usage: streamer archive info ")
    assert err.endswith("\nstreamer archive info: error: unrecognized arguments: b - -- -1\n")


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("analyse-fps", "analyze-fps"), ("jsnl", "jsonl"), ("max-bacth", "max-batch"),
     ("llm-ulr", "llm-url"), ("blah", None), ("colour", None)],
)  # fmt: skip
def test_a_flag_and_a_file_key_get_the_same_hint(capsys, typed, meant) -> None:
    err = refused(capsys, ["run", "clip.mp4", f"--{typed}", "1"])
    with pytest.raises(ConfigError) as read:
        config_file.from_mapping({typed: 1}, "streamer.toml")
    if meant is None:
        assert "did you mean" not in err and "did you mean" not in str(read.value)
    else:
        assert f"did you mean --{meant}?" in err
        assert f"did you mean {meant!r}?" in str(read.value)
