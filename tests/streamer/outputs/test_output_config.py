"""`OutputConfig` from Python: paths as str or `os.PathLike` (kept as str), anything else and
switches that are not True/False refused when it is made, before any file exists."""

from pathlib import Path

import pytest
from media import read_jsonl

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.errors import ConfigError
from streamer.outputs.options import check_writable


def test_the_paths_may_be_path_objects_and_are_kept_as_text(tmp_path):
    outputs = OutputConfig(video=Path("o.mp4"), srt=tmp_path / "a.srt", vtt=Path("a.vtt"),
                           jsonl=Path("-"))  # fmt: skip
    assert (outputs.video, outputs.srt, outputs.vtt, outputs.jsonl) == (
        "o.mp4",
        str(tmp_path / "a.srt"),
        "a.vtt",
        "-",
    )
    assert outputs.for_stream("door").video == "o.mp4"


@pytest.mark.parametrize(("field", "flag"), [("video", "--output"), ("srt", "--srt"),
                                             ("vtt", "--vtt"), ("jsonl", "--jsonl")])  # fmt: skip
@pytest.mark.parametrize("value", [5, b"o.mp4", ["o.mp4"]])
def test_a_path_of_another_type_is_refused_naming_the_field(field, flag, value):
    with pytest.raises(ConfigError) as caught:
        OutputConfig(**{field: value})
    message = str(caught.value)
    assert message.startswith(f"{field} must be a path: a str or an os.PathLike")
    assert message.endswith(f"({flag})")


@pytest.mark.parametrize(("field", "value"), [("copy_audio", "no"), ("fragmented", 1)])
def test_a_switch_takes_true_or_false(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} must be True"):
        OutputConfig(**{field: value})


@pytest.mark.integration
async def test_a_run_given_path_objects_writes_to_them(tmp_path, small_clip, tiny_encoder):
    config = RunConfig(input=small_clip, outputs=OutputConfig(
        video=tmp_path / "a.mp4", jsonl=tmp_path / "a.jsonl", preset="ultrafast"))  # fmt: skip
    summary = await run_pipeline(config, encoder=tiny_encoder)
    assert summary.frames == 50 and (tmp_path / "a.mp4").stat().st_size > 0
    assert read_jsonl(tmp_path / "a.jsonl")[0]["stream"] == "small"


def test_an_output_in_a_folder_that_cannot_be_written_says_why(tmp_path, read_only):
    """A read-only folder (a read-only mount for root, whom permissions do not stop) is refused
    naming what stops the write, before any work."""
    (tmp_path / "locked").mkdir()
    locked = read_only(tmp_path / "locked")
    with pytest.raises(ConfigError) as caught:
        check_writable(str(locked / "out.mp4"))
    message = str(caught.value)
    assert f"cannot write there ({locked} is " in message, message
    assert "write the output somewhere else" in message, message
