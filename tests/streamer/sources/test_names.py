"""A run's stream names: decided once for every input (`stream_names`), the same names the
sources are made with and `--alert STREAM=QUERY` is checked against."""

from __future__ import annotations

import pytest

from streamer.sources import open_source
from streamer.sources.names import default_stream_name, spec_kind, stream_names


def test_names_come_from_the_spec_without_credentials(small_clip):
    named = stream_names(
        ["0", "/dev/video2", "rtsp://admin:secret@10.0.0.7:554/live/main?token=x", small_clip]
    )
    assert named == [
        ("cam0", "0"),
        ("cam2", "/dev/video2"),
        ("10.0.0.7_554_live_main", "rtsp://admin:secret@10.0.0.7:554/live/main?token=x"),
        ("small", str(small_clip)),
    ]
    assert not any("secret" in name or "token" in name for name, _ in named)


def test_a_given_name_is_taken_off_the_spec():
    assert stream_names(["door=rtsp://u:p@cam/1", "yard=0", "hall=clips/hall.mp4"]) == [
        ("door", "rtsp://u:p@cam/1"),
        ("yard", "0"),
        ("hall", "clips/hall.mp4"),
    ]


def test_repeated_names_get_numbered_in_input_order():
    names = [name for name, _ in stream_names(["0", "0", "0", "a/clip.mp4", "b/clip.mkv"])]
    assert names == ["cam0", "cam0-2", "cam0-3", "clip", "clip-2"]


def test_a_given_name_never_collides_with_a_numbered_one():
    names = [name for name, _ in stream_names(["a=0", "a=1", "a-2=2", "a=3"])]
    assert names == ["a", "a-2", "a-2-2", "a-3"]
    assert len(set(names)) == len(names)


def test_a_file_whose_name_holds_an_equals_sign_is_not_split(tmp_path):
    path = tmp_path / "take=2.mp4"
    path.write_bytes(b"")
    assert stream_names([str(path)]) == [("take_2", str(path))]


@pytest.mark.parametrize(
    ("spec", "kind", "name"),
    [
        ("3", "camera", "cam3"),
        ("/dev/v4l/by-id/usb-Cam_1-video-index0", "camera", "usb-Cam_1-video-index0"),
        ("https://example.org/live/index.m3u8?k=1", "url", "example.org_live_index.m3u8"),
        ("ftp://u:pw@host/v.mp4", "url", "host_v.mp4"),  # refused when opened, named anyway
        ("rtsp://u:pw@host:80x/a", "url", "host_a"),  # a malformed port: refused when opened
        ("videos/clip.final.mp4", "file", "clip.final"),
        # what a name may not hold (MQTT wildcards, spaces, '/'-free already) becomes '_'
        ("rec/front door #1+.mp4", "file", "front_door_1"),
        ("rec/__.mp4", "file", "clip"),
    ],
)
def test_each_kind_of_spec_and_its_default_name(spec, kind, name):
    assert spec_kind(spec) == kind
    assert default_stream_name(spec) == name


def test_sources_are_made_with_the_names_a_run_gives_them(small_clip):
    sources = [open_source(spec, name) for name, spec in stream_names([small_clip] * 2)]
    assert [s.name for s in sources] == ["small", "small-2"]
    # Made without a name, a source names itself by the same rule.
    assert open_source(small_clip).name == stream_names([small_clip])[0][0]
