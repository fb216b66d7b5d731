"""`AnalysisConfig` and `EncoderChoice` from Python: labels as a tuple (the command line's text
is refused, naming `load_labels`), switches as True/False, paths as str or `os.PathLike`."""

from pathlib import Path

import pytest

from streamer import AnalysisConfig, EncoderChoice
from streamer.analysis.labels import load_labels
from streamer.errors import ConfigError


def test_labels_as_the_command_lines_text_are_refused_naming_load_labels():
    with pytest.raises(ConfigError) as caught:
        AnalysisConfig(labels="dog, cat")  # once: tags 'd', 'o', 'g', ',', ...
    message = str(caught.value)
    assert message.startswith("labels must be a tuple of labels such as ('dog', 'cat')")
    assert "got str 'dog, cat' (--labels): labels=load_labels('dog, cat')" in message
    assert AnalysisConfig(labels=load_labels("dog, cat")).labels == ("dog", "cat")


@pytest.mark.parametrize("labels", [[], ("dog", 3), ("dog", " "), 5, {"dog": 1}])
def test_labels_that_are_no_tuple_of_labels_are_refused(labels):
    with pytest.raises(ConfigError, match=r"^labels must be a tuple of labels"):
        AnalysisConfig(labels=labels)


def test_labels_as_a_list_are_kept_as_a_tuple():
    assert AnalysisConfig(labels=["dog", "cat"]).labels == ("dog", "cat")
    assert AnalysisConfig().labels is None  # the shipped vocabulary


def test_text_cache_takes_a_path_and_refuses_anything_else(tmp_path):
    assert AnalysisConfig(text_cache=tmp_path).text_cache == str(tmp_path)
    with pytest.raises(ConfigError, match=r"^text_cache must be a path: a str or an os\.PathLike"
                                          r".*, got int 5$"):  # fmt: skip
        AnalysisConfig(text_cache=5)


@pytest.mark.parametrize("field", ["int8", "compile", "cuda_graphs"])
@pytest.mark.parametrize("value", ["yes", 1, 0, "False"])
def test_an_encoder_switch_takes_true_or_false(field, value):
    with pytest.raises(ConfigError) as caught:
        EncoderChoice(weights="random", **{field: value})
    flag = "--" + field.replace("_", "-")
    assert str(caught.value).startswith(f"{field} must be True") and flag in str(caught.value)


def test_the_encoders_paths_take_a_path(tmp_path):
    choice = EncoderChoice(weights=tmp_path / "w.pt", calibrate=Path("street.mp4"),
                           export_cache=tmp_path)  # fmt: skip
    assert (choice.weights, choice.calibrate, choice.export_cache) == (
        str(tmp_path / "w.pt"),
        "street.mp4",
        str(tmp_path),
    )
    with pytest.raises(ConfigError, match=r"^calibrate must be a path.*\(--calibrate\)$"):
        EncoderChoice(calibrate=3)
