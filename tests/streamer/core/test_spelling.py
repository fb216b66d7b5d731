"""The one "did you mean" rule of the command line, configuration files and the stream API."""

import pytest

from streamer.core.spelling import closest

STREAM_KEYS = ["name", "input", "analyze-fps", "labels", "alerts", "captions", "output", "jsonl"]
FLAGS = ["batch", "jsonl", "json", "crf", "analyze-fps", "serve-token", "server", "retain"]


@pytest.mark.parametrize(
    ("typed", "known", "meant"),
    [
        ("nmae", STREAM_KEYS, "name"),  # two neighbours swapped
        ("label", STREAM_KEYS, "labels"),  # a letter missing
        ("lable", STREAM_KEYS, "labels"),  # swapped and missing: two edits in a long word
        ("analyse", STREAM_KEYS, "analyze-fps"),  # a slip of the key's first part
        ("analyze", STREAM_KEYS, "analyze-fps"),  # the key's first part alone
        ("serve-tokn", FLAGS, "serve-token"),
        ("jsnol", FLAGS, "jsonl"),
    ],
)
def test_a_slip_gets_the_word_it_means(typed, known, meant) -> None:
    assert closest(typed, known) == meant


@pytest.mark.parametrize(
    ("typed", "known"),
    [
        ("blah", FLAGS),  # shares a few letters with "batch", nothing more
        ("lbl", STREAM_KEYS),  # short words get no two-edit leeway
        ("fps", STREAM_KEYS),  # a key's last part is not its head
        ("stream", STREAM_KEYS),
    ],
)
def test_a_word_that_is_only_alike_gets_no_hint(typed, known) -> None:
    assert closest(typed, known) is None
