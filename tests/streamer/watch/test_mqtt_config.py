"""`--mqtt` and its options: the command line, a `[mqtt]` table, `config --print`, the API."""

from __future__ import annotations

import importlib.util
import re
import tomllib

import pytest

from streamer import ConfigError, OutputConfig, RunConfig, run_pipeline
from streamer.cli.build import configure, settings
from streamer.cli.main import build_parser, main
from streamer.run_setup import observers_from_config
from streamer.watch.mqtt import MqttConfig, MqttPublisher

URL = "mqtt://ha:pa55word@broker.local"


def configured(*argv: str) -> RunConfig:
    return configure(settings(build_parser().parse_args(["run", *argv])))


def test_flags_make_the_mqtt_section_and_the_broker_is_taken_apart():
    config = configured("a.mp4", "--jsonl", "a.jsonl", "--mqtt", URL, "--mqtt-prefix", "cams/",
                        "--no-mqtt-discovery", "--mqtt-image-every", "0")  # fmt: skip
    mqtt = config.mqtt
    assert mqtt is not None and mqtt.prefix == "cams" and not mqtt.discovery
    assert mqtt.image_every_s == 0 and mqtt.discovery_prefix == "homeassistant"
    broker = mqtt.broker
    assert (broker.host, broker.port, broker.tls) == ("broker.local", 1883, False)
    assert (broker.username, broker.password) == ("ha", "pa55word")
    assert broker.where == "mqtt://***@broker.local:1883"
    assert MqttConfig("mqtts://h").broker.port == 8883 and MqttConfig("mqtts://h").broker.tls
    assert configured("a.mp4", "--jsonl", "a.jsonl").mqtt is None
    assert isinstance(observers_from_config(config)[0], MqttPublisher)


def test_mqtt_alone_is_enough_to_run():
    config = configured("door=rtsp://cam.local/s", "--alert", "a person", "--mqtt", URL)
    assert config.mqtt is not None and not config.outputs.paths()


def test_a_mqtt_table_in_a_config_file_sets_it_as_the_flags_do(tmp_path):
    path = tmp_path / "streamer.toml"
    path.write_text(f'inputs = ["a.mp4"]\njsonl = "a.jsonl"\n[mqtt]\nmqtt = "{URL}"\n'
                    'mqtt-queue = 50\nmqtt-status-every = "30"\n', encoding="utf-8")  # fmt: skip
    mqtt = configured("--config", str(path)).mqtt
    assert mqtt is not None and mqtt.url == URL and mqtt.queue == 50 and mqtt.status_every_s == 30


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--mqtt-prefix", "x"], "--mqtt-prefix needs --mqtt URL"),
        (["--mqtt", "http://u:pa55word@h"], "must be an mqtt:// or mqtts:// URL"),
        # characters a URL gives other meanings: the password must not show, the fix must
        (["--mqtt", "mqtt://u:pa55#word@h:1883"], "%23"),
        (["--mqtt", "mqtt://u:pa55?word@h"], "%3F"),
        (["--mqtt", "mqtt://u:pa55/word@h"], "%2F"),
        (["--mqtt", URL, "--mqtt-prefix", "a/#"], "without wildcards"),
        (["--mqtt", URL, "--mqtt-status-every", "0.5"], "≥ 1"),
        (["--mqtt", URL, "--mqtt-ca", "ca.pem"], "--mqtt-ca is for TLS"),
    ],
)
def test_mistakes_are_refused_naming_the_option_and_never_the_password(argv, words, capsys):
    try:
        code = main(["run", "a.mp4", "--jsonl", "a.jsonl", *argv])
    except SystemExit as exit:  # refused by the parser
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and "pa55word" not in err and "Traceback" not in err


def test_a_bad_url_in_a_file_is_refused_without_its_password(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    for url in ("http://u:pa55word@h", "mqtt://u:pa55?word@h", "mqtt://u:pa55#word@h"):
        path.write_text(f'inputs = ["a.mp4"]\njsonl = "a.jsonl"\n[mqtt]\nmqtt = "{url}"\n')
        assert main(["config", "--check", str(path)]) == 2
        err = capsys.readouterr().err
        assert "mqtt.mqtt" in err and "must be an mqtt://" in err and "pa55" not in err, err


def test_the_api_refuses_what_the_command_line_refuses():
    with pytest.raises(ConfigError, match=re.escape("prefix must be an MQTT topic")):
        MqttConfig(URL, prefix="a+b")
    with pytest.raises(ConfigError, match="--mqtt must be") as bad:
        RunConfig(input="a.mp4", outputs=OutputConfig(jsonl="a.jsonl"),
                  mqtt=MqttConfig("mqtt://u:pa55word@"))  # fmt: skip
    assert "pa55word" not in str(bad.value)


def test_print_masks_the_password_and_loads_back_to_the_same_options(tmp_path, capsys):
    argv = ["a.mp4", "--jsonl", "a.jsonl", "--mqtt", URL, "--mqtt-prefix", "cams",
            "--mqtt-queue", "20"]  # fmt: skip
    assert main(["config", "--print", *argv]) == 0
    printed = capsys.readouterr().out
    assert "pa55word" not in printed
    table = tomllib.loads(printed)  # the keys of every table are flat (its flags' names)
    assert table["mqtt"] == "mqtt://***@broker.local" and table["mqtt-prefix"] == "cams"
    path = tmp_path / "printed.toml"
    path.write_text(printed, encoding="utf-8")
    again, original = configured("--config", str(path)).mqtt, configured(*argv).mqtt
    assert again is not None and original is not None
    assert again.url == "mqtt://***@broker.local"  # credentials are not printed
    assert (again.prefix, again.queue, again.discovery, again.image_every_s) == (
        original.prefix,
        original.queue,
        original.discovery,
        original.image_every_s,
    )


def test_the_ca_file_may_be_a_path_and_discovery_takes_a_bool(tmp_path):
    config = MqttConfig("mqtts://broker", ca_file=tmp_path / "ca.pem")
    assert config.ca_file == str(tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match=r"^ca_file must be a path: .* \(--mqtt-ca\)$"):
        MqttConfig("mqtts://broker", ca_file=1)
    with pytest.raises(ConfigError, match=r"^discovery must be True or False, got str 'no'"):
        MqttConfig("mqtt://broker", discovery="no")


def test_every_stream_name_is_its_own_home_assistant_device():
    # "cam-1" and "cam_1" were one device (and removing one deleted the other's entities);
    # a name that is already an id keeps it, as the topics and earlier runs have it.
    from streamer.watch.mqtt.topics import Topics, entities

    def ids(stream: str) -> set[str]:
        made = list(entities(Topics(), stream, ("a person",), images=True))
        return {e.config["unique_id"] for e in made} | {e.topic for e in made}

    names = ["cam-1", "cam_1", "Door", "door", "a.b", "a_b"]
    every = [ids(name) for name in names]
    for i, one in enumerate(every):
        for other in every[i + 1 :]:
            assert not one & other
    assert "homeassistant/sensor/streamer/door_caption/config" in ids("door")
    assert "homeassistant/sensor/streamer/cam-1_caption/config" in ids("cam-1")
    assert all(re.fullmatch(r"[a-z0-9_/-]+", topic) for topic in ids("Door") if "/" in topic)


async def test_without_aiomqtt_a_run_is_refused_before_its_model_loads(tmp_path, monkeypatch):
    # It was refused once the model had loaded (seconds to minutes with real weights).
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "aiomqtt" else real(name, *a))  # fmt: skip
    # An input that is not there: the model would load beside its check; the refusal is first.
    config = RunConfig(input=str(tmp_path / "a.mp4"), mqtt=MqttConfig("mqtt://127.0.0.1:1883"))
    with pytest.raises(ConfigError, match=r"--mqtt needs the aiomqtt package: pip install"):
        await run_pipeline(config)
