"""The status table's lines on the archive (`streamer.report.archive_line`) and on MQTT
(`mqtt_line`), from the plain state a run with `--archive` or `--mqtt` carries."""

from streamer.report import archive_line, mqtt_line


def _status(**changes) -> dict:
    status = {
        "path": "/srv/arch", "state": "ok", "error": None,
        "moments": {"written": 120, "queued": 0, "dropped": 0, "lost": 0},
        "recordings": {"door": {"state": "recording", "detail": None, "bytes": 12_345_678}},
        "clips": {"written": 0, "failed": 0, "waiting": 0},
    }  # fmt: skip
    return {**status, **changes}


def test_a_healthy_archive_is_one_short_line():
    assert archive_line(_status()) == "archive /srv/arch: ok, 120 moments; door recording 12.3 MB"


def test_a_stopped_archive_says_so_and_why_and_what_it_missed():
    line = archive_line(_status(
        state="failed", error="writing the archive's index failed: No space left on device",
        moments={"written": 120, "queued": 0, "dropped": 2, "lost": 31},
        recordings={"door": {"state": "failed", "detail": "the disk is full", "bytes": 0},
                    "gate": {"state": "recording", "detail": None, "bytes": 1_000_000}},
        clips={"written": 3, "failed": 1, "waiting": 2},
    ))  # fmt: skip
    assert line.startswith("archive /srv/arch: FAILED, 120 moments (2 dropped, 31 lost): ")
    assert "No space left on device; the streams go on" in line
    assert "; door failed 0.0 MB (the disk is full); gate recording 1.0 MB" in line
    assert line.endswith("; 3 clips (2 waiting, 1 failed)")


def test_the_mqtt_line_reads_the_publisher_s_own_state_and_never_its_password():
    """The line under the table with --mqtt, from a real publisher's `status()`: before it
    reached its broker it says so, and the URL it shows has no credentials."""
    from streamer.watch.mqtt import MqttConfig, MqttPublisher

    publisher = MqttPublisher(MqttConfig("mqtt://cam:pa55word@hub.local:1883"))
    line = mqtt_line(publisher.status())
    assert line == "mqtt mqtt://***@hub.local:1883: NOT CONNECTED, 0 published"
    connected = {**publisher.status(), "connected": True, "published": 7, "queued": 2}
    expected = "mqtt mqtt://***@hub.local:1883: connected, 7 published (2 queued)"
    assert mqtt_line(connected) == expected
