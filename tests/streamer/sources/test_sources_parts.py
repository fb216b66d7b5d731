"""The small parts of live sources: option validation, redaction, the spec dispatch of
`open_source`, and the redaction of FFmpeg's own log lines (the backoff arithmetic is tested
with `RetryPolicy` in tests/streamer/core/test_retry.py)."""

from __future__ import annotations

import logging

import av.logging
import pytest
from live_helpers import free_port

from streamer.core.redact import install_libav_redaction
from streamer.core.retry import RetryPolicy
from streamer.errors import ConfigError, SourceOpenError
from streamer.sources import (
    CameraSource,
    FileSource,
    NetworkSource,
    SourceOptions,
    open_source,
    redact,
)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rtsp_transport", "http", "rtsp_transport must be one of tcp, udp, got 'http'"),
        ("open_timeout", 0, "open_timeout must be a number of seconds > 0, got 0"),
        ("read_timeout", -1.0, "read_timeout must be a number of seconds > 0, got -1.0"),
        ("read_timeout", "5", "read_timeout must be a number of seconds > 0, got '5'"),
        ("reconnect", (0.5, 10.0), "reconnect must be a RetryPolicy, got tuple (0.5, 10.0)"),
    ],
)
def test_source_options_name_the_bad_value(field, value, message):
    with pytest.raises(ConfigError) as caught:
        SourceOptions(**{field: value})
    assert message in str(caught.value)


def test_source_options_are_frozen_with_live_defaults():
    options = SourceOptions()
    assert (options.rtsp_transport, options.open_timeout, options.read_timeout) == ("tcp", 5, 5)
    assert options.reconnect == RetryPolicy(initial=0.5, cap=10.0, jitter=0.25)
    assert options.reconnect.max_attempts is None  # a camera may come back: retry forever
    with pytest.raises(AttributeError):
        options.read_timeout = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://user:secret@10.0.0.7:554/a", "rtsp://***@10.0.0.7:554/a"),
        ("rtsp://user@10.0.0.7/a", "rtsp://***@10.0.0.7/a"),
        ("rtsp://admin:p@ss@cam.local/live", "rtsp://***@cam.local/live"),
        ("HTTPS://u:p@host/x.m3u8?ch=1", "HTTPS://***@host/x.m3u8?ch=1"),
        (
            "open 'rtsp://a:b@h1/x' and 'http://c:d@h2/y' failed",
            "open 'rtsp://***@h1/x' and 'http://***@h2/y' failed",
        ),
        (
            "http://cam/snap.cgi?user=admin&password=hunter2",
            "http://cam/snap.cgi?user=admin&password=***",
        ),
        ("http://cam/live?token=abc123#x", "http://cam/live?token=***#x"),
        ("rtsp://10.0.0.7/path/with@sign", "rtsp://10.0.0.7/path/with@sign"),
        # a password typed with characters a URL reads otherwise (not percent-encoded)
        ("got 'mqtt://ha:pa#ss@127.0.0.1:1883'", "got 'mqtt://***@127.0.0.1:1883'"),
        ("mqtt://ha:my?secret@h", "mqtt://***@h"),
        ("rtsp://admin:a/b@cam/live", "rtsp://***@cam/live"),
        ("mail me at a@b.example", "mail me at a@b.example"),
        ("no url here", "no url here"),
    ],
)
def test_redact_blanks_credentials_in_any_text(text, expected):
    assert redact(text) == expected


def test_libav_log_lines_are_redacted(caplog):
    install_libav_redaction()
    caplog.set_level(logging.DEBUG)
    av.logging.set_level(av.logging.VERBOSE)
    try:
        # Through PyAV's own callback, as FFmpeg's messages come: logger `libav.rtsp`.
        av.logging.log(av.logging.ERROR, "rtsp", "DESCRIBE rtsp://admin:secret@10.0.0.7/x failed")
    finally:
        av.logging.set_level(None)
    logging.getLogger("libav.tcp").warning("to %s", "http://u:secret@h/")
    assert [r.name for r in caplog.records] == ["libav.rtsp", "libav.tcp"]
    assert "secret" not in caplog.text
    assert "DESCRIBE rtsp://***@10.0.0.7/x failed" in caplog.text
    assert "to http://***@h/" in caplog.text


def test_open_source_dispatches_by_spec(small_clip):
    # A playlist is fetched to tell whether it is finished; nothing listens on this port, so
    # it stays live (a finished one: tests/streamer/sources/test_network.py).
    playlist = f"http://127.0.0.1:{free_port()}/live/index.m3u8?k=1"
    cases = {
        "rtsp://cam.local:8554/live/main": (NetworkSource, True, "cam.local_8554_live_main"),
        "rtsps://u:p@cam.local/s1": (NetworkSource, True, "cam.local_s1"),
        "http://10.0.0.7/mjpg/video.mjpg": (NetworkSource, True, "10.0.0.7_mjpg_video.mjpg"),
        playlist: (NetworkSource, True, None),
        "https://example.org/media/clip.mp4": (NetworkSource, False, "example.org_media_clip.mp4"),
        "0": (CameraSource, True, "cam0"),
        "/dev/video1": (CameraSource, True, "cam1"),
        str(small_clip): (FileSource, False, "small"),
    }
    for spec, (kind, live, name) in cases.items():
        source = open_source(spec)
        assert type(source) is kind, spec
        assert source.live is live, spec
        if name:
            assert source.name == name, spec
    assert open_source("https://example.org/live/index.m3u8?k=1", live=True).name == (
        "example.org_live_index.m3u8"
    )


def test_open_source_live_overrides_the_default_contract(small_clip):
    assert open_source(str(small_clip), live=True).live is True
    assert open_source("rtsp://cam.local/s", live=False).live is False
    assert open_source("http://h/clip.mp4", live=True).live is True
    assert open_source("0", live=False).live is False


def test_unsupported_url_schemes_are_refused_with_the_alternatives():
    with pytest.raises(SourceOpenError, match=r"ftp:// streams are not supported. Fix: use rtsp"):
        open_source("ftp://user:secret@host/video.mp4")
    with pytest.raises(SourceOpenError) as caught:
        open_source("ftp://user:secret@host/video.mp4")
    assert "secret" not in str(caught.value)
    with pytest.raises(SourceOpenError, match=r"'rtsp://\*\*\*@host:80x/a': the port is not"):
        open_source("rtsp://user:secret@host:80x/a")


def test_network_source_spec_and_name_carry_no_credentials():
    source = NetworkSource("rtsp://admin:secret@127.0.0.1:8554/cam1?token=t0k")
    assert source.spec == "rtsp://***@127.0.0.1:8554/cam1?token=***"
    assert source.name == "127.0.0.1_8554_cam1"
    assert source.status.state == "connecting" and source.info is None


@pytest.mark.parametrize("spec", ["https://u:secret@cdn/live/stream.MPD?t=1", "local/show.mpd"])
def test_a_dash_manifest_is_refused_at_once_when_ffmpeg_cannot_read_dash(monkeypatch, spec):
    """PyAV's FFmpeg has no DASH demuxer: an .mpd URL was retried forever ("the server sent no
    readable video"); it is refused at open, naming DASH and the alternatives."""
    import streamer.sources as sources

    monkeypatch.setattr(sources, "_has_demuxer", lambda name: False)
    with pytest.raises(SourceOpenError, match=r"DASH manifest \(\.mpd\).*Fix: .*HLS") as caught:
        open_source(spec)
    assert "secret" not in str(caught.value)
    monkeypatch.setattr(sources, "_has_demuxer", lambda name: name == "dash")
    assert isinstance(open_source(spec.replace("local/", "rtsp://h/")), NetworkSource)
