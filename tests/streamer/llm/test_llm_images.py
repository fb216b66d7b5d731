"""Frames to JPEG data URIs: size, colour order, input checks."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from streamer.llm import CaptionRequest, LlmInputError
from streamer.llm.images import encode_jpeg, jpeg_data_uri, probe_image


def _decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def test_a_large_frame_is_scaled_to_the_long_edge_and_keeps_its_colours():
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[..., 0] = 220  # red: a swapped channel order would come back blue
    decoded = _decode(encode_jpeg(frame, long_edge=640, quality=90))
    assert decoded.shape == (360, 640, 3)
    assert decoded[..., 0].mean() > 200 and decoded[..., 2].mean() < 20


def test_a_small_frame_is_not_enlarged_and_quality_changes_the_size():
    frame = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    assert _decode(encode_jpeg(frame, long_edge=1024)).shape == (90, 160, 3)
    assert len(encode_jpeg(frame, quality=20)) < len(encode_jpeg(frame, quality=95))


def test_the_data_uri_is_one_line_of_base64_jpeg():
    uri = jpeg_data_uri(encode_jpeg(probe_image()))
    head, data = uri.split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert "\n" not in data
    assert base64.b64decode(data)[:2] == b"\xff\xd8"
    assert probe_image().shape == (16, 16, 3)


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
     np.zeros((0, 4, 3), np.uint8), [[1, 2, 3]]],
)  # fmt: skip
def test_frames_that_are_not_hxwx3_uint8_are_refused_before_any_request(image):
    with pytest.raises(LlmInputError, match="HxWx3 uint8"):
        CaptionRequest("cam", 0.0, ("dog",), image)
    with pytest.raises(LlmInputError):
        encode_jpeg(image)


def test_tags_must_be_label_strings():
    assert CaptionRequest("cam", 0.0, ["dog", "cat"]).tags == ("dog", "cat")
    assert CaptionRequest("cam", 0.0, "dog").tags == ("dog",)
    with pytest.raises(LlmInputError, match=r"tags must be strings \(labels\), got \['float'\]"):
        CaptionRequest("cam", 0.0, ("dog", 0.9))
