"""The writers' colour conversion: the same pixels as PyAV's own copy-then-convert, from a view."""

import subprocess
import sys

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


# A picture that ends right before an unreadable page: a conversion that reads past its last
# row kills the process (SIGSEGV), so it runs in a child.
_AT_A_GUARD_PAGE = """
import ctypes, mmap, sys
import numpy as np
from av.video.reformatter import VideoReformatter
from streamer.outputs.yuv import to_yuv420
from streamer.watch.web._rtc_media import RtcLimits, _Coder

width, height = int(sys.argv[1]), int(sys.argv[2])
size, page = width * height * 3, mmap.PAGESIZE
pages = -(-size // page)
buffer = mmap.mmap(-1, (pages + 1) * page)
start = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.mprotect(ctypes.c_void_p(start + pages * page), page, 0) == 0  # PROT_NONE
image = np.frombuffer(buffer, np.uint8, size, pages * page - size).reshape(height, width, 3)
image[:] = np.arange(size, dtype=np.uint8).reshape(image.shape)
frame = to_yuv420(image, VideoReformatter())
_Coder("H264", RtcLimits()).encode(image, key=True)
print("converted", frame.width, frame.height)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the guard page is made with Linux mprotect")
@pytest.mark.parametrize(("width", "height"), [(322, 182), (854, 480), (1366, 768), (320, 180)])
def test_a_picture_is_not_read_past_its_end(width, height):
    """libswscale's SIMD readers go past the last row of a picture whose rows are not a
    multiple of 16 bytes (an odd-sized source crashed a run now and then, where the picture's
    buffer happened to end at a page boundary): such pictures are copied into a padded
    frame first, by the writers and by the WebRTC encoder."""
    done = subprocess.run([sys.executable, "-c", _AT_A_GUARD_PAGE, str(width), str(height)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["converted", str(width), str(height)]
