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


def _picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = rng.integers(0, 40, (height, width, 3))
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("height", "width"), [(720, 1280), (64, 96), (36, 50)])
def test_the_frame_matches_pyavs_own_conversion(height, width):
    image = _picture(height, width)
    made = to_yuv420(image, VideoReformatter())
    assert made.format.name == "yuv420p"
    assert (made.width, made.height) == (width, height)
    np.testing.assert_array_equal(made.to_ndarray(), _reference(image).to_ndarray())


def test_one_context_serves_frame_after_frame_and_a_change_of_size():
    reformatter = VideoReformatter()
    for seed, (height, width) in enumerate([(64, 96), (64, 96), (48, 80), (64, 96)]):
        image = _picture(height, width, seed)
        made = to_yuv420(image, reformatter)
        np.testing.assert_array_equal(made.to_ndarray(), _reference(image).to_ndarray())


def test_a_view_and_a_read_only_picture_convert_like_a_copy():
    base = _picture(64, 128)
    view = base[:, 16:112]  # rows of the larger picture: not contiguous
    frozen = base.copy()
    frozen.flags.writeable = False  # a decoded frame's array may be read-only
    for image in (view, frozen):
        made = to_yuv420(image, VideoReformatter())
        np.testing.assert_array_equal(made.to_ndarray(), _reference(image).to_ndarray())


def test_the_frame_owns_its_pixels_once_made():
    image = _picture(64, 96)
    made = to_yuv420(image, VideoReformatter())
    before = made.to_ndarray().copy()
    image[:] = 0  # the writer's picture is reused or freed after the call
    np.testing.assert_array_equal(made.to_ndarray(), before)
