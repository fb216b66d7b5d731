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

__all__ = ["BT709", "TV_RANGE", "to_yuv420"]

#: The codec tags of what `to_yuv420` makes (AVCOL_PRI/TRC/SPC_BT709 and AVCOL_RANGE_MPEG), set
#: on the encoder so that players read the colours as they were converted.
BT709 = 1
TV_RANGE = 1


def to_yuv420(image: np.ndarray, reformatter: VideoReformatter) -> av.VideoFrame:
    """`image` (H×W×3 uint8 RGB) as a yuv420p frame in BT.709 colours.

    The RGB side is a view of `image` (`VideoFrame.from_numpy_buffer`), read while the
    conversion runs and not after: the frame returned owns its pixels. `reformatter` keeps
    its context from frame to frame; it is not thread-safe, so each writer holds its own
    (or a lock around it).
    """
    rgb = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(image), format="rgb24")
    return reformatter.reformat(rgb, format="yuv420p", dst_colorspace=Colorspace.ITU709)
