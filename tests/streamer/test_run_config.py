"""`RunConfig` and `run_pipeline` given values of the wrong type from Python: refused at
construction (or at the entry) with a ConfigError naming the parameter, what it got and what
it takes, never a TypeError or AttributeError from deep inside a run; paths as `pathlib.Path`."""

import threading
from pathlib import Path

import pytest

from streamer import OutputConfig, RunConfig, ServeConfig, run_pipeline
from streamer.analysis.alerts import AlertRule
from streamer.archive.options import ArchiveConfig
from streamer.cluster.driver import run_cluster
from streamer.cluster.options import ClusterConfig
from streamer.core.events import Observer
from streamer.errors import ConfigError

OUT = OutputConfig(jsonl="out.jsonl")


def test_an_input_may_be_a_path_alone_or_in_a_list():
    assert RunConfig(input=Path("clip.mp4"), outputs=OUT).inputs == ("clip.mp4",)
    both = RunConfig(input=[Path("a.mp4"), "door=rtsp://cam/s"], outputs=OUT)
    assert both.inputs == ("a.mp4", "door=rtsp://cam/s")


@pytest.mark.parametrize(
    ("given", "words"),
    [(0, "got int 0: a camera's index goes as text, '0'"), (None, "got None"),
     ([Path("a.mp4"), 3], "got int 3")],
)  # fmt: skip
def test_an_input_of_another_type_is_refused_naming_what_it_takes(given, words):
    with pytest.raises(ConfigError) as caught:
        RunConfig(input=given, outputs=OUT)
    message = str(caught.value)
    assert message.startswith("input must be a file path, camera or URL") and words in message


@pytest.mark.parametrize(
    ("fields", "words"),
    [({"outputs": None}, "outputs must be an OutputConfig, got None: outputs=OutputConfig("),
     ({"outputs": {"video": "o.mp4"}},
      "outputs must be an OutputConfig, got dict {'video': 'o.mp4'}: outputs=OutputConfig("),
     ({"outputs": "o.mp4"}, "outputs must be an OutputConfig, got str 'o.mp4'"),
     ({"encoder": "clip"}, "encoder must be an EncoderChoice, got str 'clip'"),
     ({"serve": "8080"}, "serve must be a ServeConfig or None, got str '8080'"),
     ({"llm": {"url": "http://x"}}, "llm must be an LlmConfig or None, got dict"),
     ({"alerts": "a dog"}, "alerts must be a tuple of AlertRule, got str 'a dog'"),
     ({"alerts": [AlertRule("a dog"), "a cat"]}, "alerts must be a tuple of AlertRule")],
)  # fmt: skip
def test_a_section_of_another_type_is_refused_naming_the_class_it_takes(fields, words):
    fields.setdefault("outputs", OUT)
    with pytest.raises(ConfigError) as caught:
        RunConfig(input="clip.mp4", **fields)
    assert words in str(caught.value)


def test_a_list_of_alert_rules_is_kept_as_a_tuple():
    config = RunConfig(input="clip.mp4", outputs=OUT, alerts=[AlertRule("a dog")])
    assert config.alerts == (AlertRule("a dog"),)


@pytest.mark.parametrize("live", ["yes", 1, "false"])
def test_live_takes_true_false_or_none(live):
    with pytest.raises(ConfigError, match=r"live must be True, False or None, got .* "
                                          r"\(--live/--no-drop\)"):  # fmt: skip
        RunConfig(input="clip.mp4", outputs=OUT, live=live)


class Duck:
    def start(self) -> None: ...


@pytest.mark.parametrize(
    ("arguments", "words"),
    [({"config": "x.mp4"}, "config must be a RunConfig, got str 'x.mp4': RunConfig(input=..."),
     ({"observers": None},
      "observers must be a list of Observer (streamer.core.events), got None"),
     ({"observers": [Observer(), Duck()]},
      "observers[1] must be an Observer, got test_run_config.Duck: subclass "
      "streamer.core.events.Observer"),
     # Its wait() blocked the event loop for good (the run never ended).
     ({"stop": threading.Event()},
      "stop must be an asyncio.Event or None, got threading.Event: make an asyncio.Event")],
)  # fmt: skip
async def test_run_pipeline_refuses_arguments_of_another_type_before_any_work(
    arguments, words, tmp_path, small_clip, tiny_encoder
):
    outputs = OutputConfig(video=str(tmp_path / "a.mp4"), jsonl=str(tmp_path / "a.jsonl"))
    arguments.setdefault("config", RunConfig(input=str(small_clip), outputs=outputs))
    config = arguments.pop("config")
    with pytest.raises(ConfigError) as caught:
        await run_pipeline(config, encoder=tiny_encoder, **arguments)
    assert words in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing was opened or written


async def test_run_cluster_refuses_a_stop_that_is_no_asyncio_event():
    config = RunConfig(input="clip.mp4", outputs=OUT, cluster=ClusterConfig(address="auto"))
    with pytest.raises(ConfigError) as caught:
        await run_cluster(config, stop=threading.Event())
    assert "stop must be an asyncio.Event or None, got threading.Event" in str(caught.value)


def test_the_archive_folder_may_be_a_path_and_the_viewers_switch_takes_a_bool(tmp_path):
    config = RunConfig(input="clip.mp4", archive=ArchiveConfig(tmp_path / "archive"))
    assert config.archive is not None and config.archive.path == str(tmp_path / "archive")
    with pytest.raises(ConfigError, match=r"^archive path must be a path: .*, got int 3"):
        ArchiveConfig(3)
    with pytest.raises(ConfigError, match=r"^webrtc_stamp must be True or False, got str 'on'"):
        ServeConfig(webrtc_stamp="on")
