"""RGB pictures as the frames the H.264 writers encode: yuv420p, BT.709, TV range.

Both writers that encode pictures (`VideoWriter`, the archive's recording by encoding) convert
every frame, so the conversion reads the picture where it lies and reuses one libswscale
context: at 720p on a 2-core CPU, a copy of the picture costs 15–40 % more, a copy and a context
made for each frame twice as much (`bench/colour_conversion.py`, BENCHMARKS.md).
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Colorspace, VideoReformatter

__all__ = ["BT709", "TV_RANGE", "rgb_frame", "to_yuv420"]

#: The codec tags of what `to_yuv420` makes (AVCOL_PRI/TRC/SPC_BT709 and AVCOL_RANGE_MPEG), set
#: on the encoder so that players read the colours as they were converted.
BT709 = 1
TV_RANGE = 1

#: libswscale reads a picture in place only when its rows are a multiple of this many bytes.
#: Its SIMD readers go past the end of the last row when rows are not a multiple of 16 bytes
#: (by up to 64 bytes, measured with an unreadable page right after the picture: 322, 426, 854
#: and 1366 pixels wide crashed the process, 176, 320, 336 and 352 did not); FFmpeg pads its
#: own frames for that. 64, not 16, for CPUs whose readers are wider than this one's.
_IN_PLACE_ROWS = 64


def rgb_frame(image: np.ndarray) -> av.VideoFrame:
    """`image` (H×W×3 uint8 RGB) as an rgb24 frame for libswscale to read
    (`VideoFrame.from_numpy_buffer`): a view of it when its rows are a multiple of 64 bytes long
    (640, 1280, 1920, 3840 pixels wide), else a view of a copy whose rows are padded to such a
    length and whose end has 64 bytes to spare (numpy's copy: a twentieth of PyAV's
    `from_ndarray` at 854x480). A view is read while the conversion runs, not after."""
    image = np.ascontiguousarray(image)
    if image.strides[0] % _IN_PLACE_ROWS == 0:
        return av.VideoFrame.from_numpy_buffer(image, format="rgb24")
    height, width = image.shape[:2]
    stride = -(-width * 3 // _IN_PLACE_ROWS) * _IN_PLACE_ROWS
    padded = np.empty(height * stride + _IN_PLACE_ROWS, np.uint8)
    rows = padded[: height * stride].reshape(height, stride)[:, : width * 3]
    rows = rows.reshape(height, width, 3)
    rows[...] = image
    return av.VideoFrame.from_numpy_buffer(rows, format="rgb24")


def to_yuv420(image: np.ndarray, reformatter: VideoReformatter) -> av.VideoFrame:
    """`image` (H×W×3 uint8 RGB) as a yuv420p frame in BT.709 colours.

    The RGB side is `rgb_frame(image)`, a view of `image` where that is safe: the frame
    returned owns its pixels. `reformatter` keeps its context from frame to frame; it is not
    thread-safe, so each writer holds its own (or a lock around it).
    """
    rgb = rgb_frame(image)
    return reformatter.reformat(rgb, format="yuv420p", dst_colorspace=Colorspace.ITU709)
