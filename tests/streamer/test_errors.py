"""One error tree: every exception class of `streamer` is a `StreamerError`, the docstring draws
the tree as it is, each class states its exit code, and `encoders` errors have their twins."""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import encoders
import streamer
from encoders.errors import (
    CalibrationError,
    EncoderError,
    EncoderInputError,
    ExportCacheError,
    UnknownEncoderError,
    WeightsUnavailableError,
)
from streamer import errors
from streamer.cli.exits import EXIT_ERROR, EXIT_INCOMPLETE, EXIT_USAGE, exit_code, report
from streamer.errors import (
    ConfigError,
    ModelError,
    ModelInputError,
    StreamerError,
    UnknownModelError,
    WeightsMissingError,
    from_encoder_error,
)

REPO = Path(__file__).resolve().parents[2]

# Every class of the tree and the exit code it ends `streamer` with; a new class goes here too.
EXIT_CODES = {
    "StreamerError": EXIT_ERROR,
    "ConfigError": EXIT_USAGE,
    "UnknownModelError": EXIT_USAGE,
    "UnknownStreamError": EXIT_USAGE,
    "StreamExistsError": EXIT_USAGE,
    "NoConfigFileError": EXIT_USAGE,
    "ApiRefusedError": EXIT_USAGE,
    "ApiUnavailableError": EXIT_ERROR,
    "SourceError": EXIT_ERROR,
    "SourceNotFoundError": EXIT_ERROR,
    "SourceOpenError": EXIT_ERROR,
    "SourceAuthError": EXIT_ERROR,
    "SourceDecodeError": EXIT_INCOMPLETE,
    "SourceUnavailableError": EXIT_ERROR,
    "SourceTimeout": EXIT_ERROR,
    "ModelError": EXIT_ERROR,
    "WeightsMissingError": EXIT_ERROR,
    "ModelInputError": EXIT_ERROR,
    "LlmError": EXIT_ERROR,
    "LlmUnavailableError": EXIT_ERROR,
    "LlmTimeoutError": EXIT_ERROR,
    "LlmCircuitOpenError": EXIT_ERROR,
    "LlmConfigError": EXIT_ERROR,
    "LlmAuthError": EXIT_ERROR,
    "LlmInputError": EXIT_ERROR,
    "LlmNoVisionError": EXIT_ERROR,
    "SinkError": EXIT_ERROR,
    "SinkOpenError": EXIT_ERROR,
    "ArchiveError": EXIT_ERROR,
    "ClusterError": EXIT_ERROR,
    "ClusterUnavailableError": EXIT_ERROR,
    "ActorLostError": EXIT_ERROR,
    "SampleUnavailableError": EXIT_ERROR,
    "BenchError": EXIT_ERROR,
    "ChannelClosed": EXIT_ERROR,
    "ChannelFull": EXIT_ERROR,
    "PixelsUnavailable": EXIT_ERROR,
}


@pytest.fixture(scope="module")
def error_table(load_script):
    return load_script("scripts/error_table.py")


def tree_classes() -> set[type]:
    """`StreamerError` and every class below it (the encoder twins made first)."""
    found, todo = set(), [StreamerError, ModelError, UnknownModelError]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.add(cls)
            todo += cls.__subclasses__()
    return found


def exception_classes_of_streamer() -> dict[str, type]:
    """Every exception class defined in a module of the `streamer` package, by import path."""
    found = {}
    for info in pkgutil.walk_packages(streamer.__path__, "streamer."):
        if info.name.endswith("__main__"):  # running it would start the command
            continue
        module = importlib.import_module(info.name)
        for name in dir(module):
            value = getattr(module, name)
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
            ):
                found[f"{info.name}.{value.__qualname__}"] = value
    return found


def test_every_exception_class_defined_in_streamer_is_a_streamer_error():
    classes = exception_classes_of_streamer()
    assert "streamer.errors.ConfigError" in classes  # the walk reaches the tree itself
    assert "streamer.errors.WeightsMissingError" in classes  # and the twins made on first use
    outside = sorted(path for path, cls in classes.items() if not issubclass(cls, StreamerError))
    assert outside == []
    # the tree lives in one module: no room keeps errors of its own
    assert {cls.__module__ for cls in classes.values()} == {"streamer.errors"}


def test_the_docstring_draws_every_class_with_its_parent_and_its_builtin(error_table):
    drawn = error_table.drawn_tree()
    names = [entry.name for entry in drawn]
    assert len(names) == len(set(names))
    assert set(names) == {cls.__name__ for cls in tree_classes()}
    for entry in drawn:
        cls = getattr(errors, entry.name)
        bases = [base.__name__ for base in cls.__bases__]
        if entry.parent is None:
            assert cls is StreamerError
        else:
            assert entry.parent in bases, f"{entry.name} is drawn under {entry.parent}"
        also = [base.__name__ for base in error_table._also(cls) if base is not Exception]
        assert list(entry.also) == also, f"{entry.name} is drawn with ({', '.join(entry.also)})"


def test_a_drawing_that_differs_from_the_classes_is_noticed(error_table):
    doc = errors.__doc__.replace("└── PixelsUnavailable (LookupError)", "└── Pixels (KeyError)")
    drawn = {entry.name: entry for entry in error_table.drawn_tree(doc)}
    assert "PixelsUnavailable" not in drawn and drawn["Pixels"].also == ("KeyError",)
    assert drawn["SourceAuthError"].parent == "SourceOpenError"
    assert drawn["LlmNoVisionError"].parent == "LlmInputError"
    assert drawn["UnknownModelError"].also == ("UnknownEncoderError",)


def test_each_class_states_the_exit_code_it_ends_streamer_with():
    assert {cls.__name__: cls.exit_code for cls in tree_classes()} == EXIT_CODES


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ConfigError("--crf must be ..."), EXIT_USAGE),
        (errors.SourceNotFoundError("no such file"), EXIT_ERROR),
        (errors.SinkOpenError("cannot open video output"), EXIT_ERROR),
        (errors.LlmInputError("context overflow", kind="context_overflow"), EXIT_ERROR),
        (UnknownEncoderError("unknown encoder 'nope'"), EXIT_USAGE),  # raw: its twin's code
        (WeightsUnavailableError("not cached"), EXIT_ERROR),
        (CalibrationError("cannot calibrate int8 on 'x.mp4'"), EXIT_ERROR),  # a ModelError
        (ExportCacheError("the export cache ran out of disk space"), EXIT_ERROR),
        (EncoderError("broken"), EXIT_ERROR),
        (OSError(98, "Address already in use"), EXIT_ERROR),
        (KeyboardInterrupt(), 130),
        (ValueError("a bug"), None),
        (RuntimeError("a bug"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_exit_code_follows_the_tree(error, code):
    assert exit_code(error) == code


def test_report_prints_the_message_and_reraises_a_bug(capsys):
    assert report(errors.ConfigError("`x` must be ≥ 1, got 0"), context="cams.toml: ") == 2
    assert capsys.readouterr().err == "streamer: error: cams.toml: `x` must be ≥ 1, got 0\n"
    assert report(errors.SourceTimeout("no answer"), "streamer llm-check") == 1
    assert capsys.readouterr().err == "streamer llm-check: error: no answer\n"
    bug = KeyError("frames")
    with pytest.raises(KeyError) as raised:
        report(bug)
    assert raised.value is bug and capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("source", "twin", "builtin"),
    [
        (UnknownEncoderError, UnknownModelError, ValueError),
        (WeightsUnavailableError, WeightsMissingError, FileNotFoundError),
        (EncoderInputError, ModelInputError, ValueError),
        (EncoderError, ModelError, Exception),
    ],
)
def test_an_encoders_error_becomes_its_twin_with_the_same_message(source, twin, builtin):
    original = source(f"{source.__name__}: what went wrong, and the fix")
    with pytest.raises(twin) as raised:
        try:
            raise original
        except EncoderError as exc:
            raise from_encoder_error(exc) from exc
    error = raised.value
    assert type(error) is twin
    assert str(error) == str(original) and error.__cause__ is original
    # still caught by what caught the original: its `encoders` class and the builtin
    assert isinstance(error, source) and isinstance(error, builtin)
    assert isinstance(error, StreamerError) and error.exit_code == EXIT_CODES[twin.__name__]
    assert type(pickle.loads(pickle.dumps(error))) is twin


def test_a_real_encoders_error_maps_and_a_subclass_takes_the_nearest_twin():
    with pytest.raises(UnknownEncoderError) as raised:
        encoders.create_encoder("no-such-encoder")
    twin = from_encoder_error(raised.value)
    assert isinstance(twin, UnknownModelError) and isinstance(twin, ConfigError)
    assert "no-such-encoder" in str(twin) and str(twin) == str(raised.value)

    class TagUnknown(UnknownEncoderError):
        pass

    assert type(from_encoder_error(TagUnknown("tag 'x'"))) is UnknownModelError


def test_from_encoder_error_passes_a_streamer_error_and_refuses_anything_else():
    error = errors.ConfigError("bad")
    assert from_encoder_error(error) is error
    with pytest.raises(TypeError, match="not an encoders error: ValueError: bad"):
        from_encoder_error(ValueError("bad"))


def test_the_tree_imports_neither_torch_nor_anything_of_streamer():
    code = (
        "import sys, streamer.errors\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('streamer', 'encoders', "
        "'torch')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["['streamer',", "'streamer.errors']"]


def test_the_readme_table_is_the_one_made_from_the_tree(error_table):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    in_readme = error_table.readme_table(readme)
    assert in_readme is not None, f"README.md lacks the markers {error_table.BEGIN!r}"
    if in_readme != error_table.error_table():
        pytest.fail(
            "README.md's table of errors and exit codes differs from streamer.errors; "
            f"regenerate it: .venv/bin/{error_table.REGENERATE}",
            pytrace=False,
        )


def test_the_table_has_a_row_per_class_and_the_other_exit_codes(error_table):
    table = error_table.error_table()
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == len(tree_classes()) + 3
    assert "| — |  | 0 | done |" in rows and any(row.startswith("| — |  | 130 |") for row in rows)
    assert "| &emsp;`ConfigError` | `ValueError` | 2 | An option has a value" in table
    assert "| &emsp;&emsp;`SourceDecodeError` |  | 3 |" in table


@pytest.mark.parametrize(
    "error",
    [
        errors.LlmTimeoutError("no answer in 60 s", kind="timeout", status=None),
        errors.LlmCircuitOpenError("not sent", kind="circuit_open", reason="circuit open"),
        errors.LlmInputError("context overflow", kind="bad_request", status=400),
        errors.SourceDecodeError("bad data", frames=12, pts=0.48),
        errors.ConfigError("--in-flight must be at least 1"),
    ],
)
def test_an_error_with_fields_crosses_a_process_whole(error):
    """Errors travel between processes (a cluster shard's captions fail at the LLM desk, a
    shard's error reaches the driver): class, message, fields and builtin parents survive."""
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert again.__dict__ == error.__dict__ and again.args == error.args
    assert isinstance(again, OSError) == isinstance(error, OSError)
