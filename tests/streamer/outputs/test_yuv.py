"""The writers' colour conversion: the same pixels as PyAV's own copy-then-convert, from a view."""

import av
import numpy as np
import pytest
from av.video.reformatter import Colorspace, VideoReformatter

from streamer.outputs.yuv import to_yuv420


def _reference(image: np.ndarray) -> av.VideoFrame:
    """PyAV's plain path: the picture copied into a frame, converted by a fresh context."""
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return rgb.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709)


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Each plane's pixels without its line padding (odd sizes included)."""
    return [
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        for plane in frame.planes
    ]


def _same(made: av.VideoFrame, reference: av.VideoFrame) -> None:
    for ours, theirs in zip(_planes(made), _planes(reference), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def _picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = rng.integers(0, 40, (height, width, 3))
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("height", "width"), [(720, 1280), (64, 96), (36, 50), (35, 51)])
def test_the_frame_matches_pyavs_own_conversion(height, width):
    image = _picture(height, width)
    made = to_yuv420(image, VideoReformatter())
    assert made.format.name == "yuv420p"
    assert (made.width, made.height) == (width, height)
    _same(made, _reference(image))


def test_one_context_serves_frame_after_frame_and_a_change_of_size():
    reformatter = VideoReformatter()
    for seed, (height, width) in enumerate([(64, 96), (64, 96), (48, 80), (64, 96)]):
        image = _picture(height, width, seed)
        made = to_yuv420(image, reformatter)
        _same(made, _reference(image))


def test_a_view_and_a_read_only_picture_convert_like_a_copy():
    base = _picture(64, 128)
    view = base[:, 16:112]  # rows of the larger picture: not contiguous
    frozen = base.copy()
    frozen.flags.writeable = False  # a decoded frame's array may be read-only
    for image in (view, frozen):
        made = to_yuv420(image, VideoReformatter())
        _same(made, _reference(image))


def test_the_frame_owns_its_pixels_once_made():
    image = _picture(64, 96)
    made = to_yuv420(image, VideoReformatter())
    before = [plane.copy() for plane in _planes(made)]
    image[:] = 0  # the writer's picture is reused or freed after the call
    for plane, kept in zip(_planes(made), before, strict=True):
        np.testing.assert_array_equal(plane, kept)
