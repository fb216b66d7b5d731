"""Frames → JPEG data URIs for the chat request.

JPEG rather than PNG (smaller) or WebP (LM Studio's OpenAI route rejects it), at most
`long_edge` pixels on the long side: LM Studio downscales to about 1024 px anyway and refuses
anything above 5120² (docs/llm-protocol.md §2). Encoding takes milliseconds, so callers on the
event loop run it in a thread (OpenCV releases the GIL).
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from streamer.errors import LlmInputError

__all__ = ["check_image", "encode_jpeg", "jpeg_data_uri", "probe_image"]


def check_image(image: object) -> np.ndarray:
    """Return `image` if it is an HxWx3 uint8 array, else raise LlmInputError."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or image.shape[0] < 1
        or image.shape[1] < 1
    ):
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise LlmInputError(f"image must be an HxWx3 uint8 RGB array, got {got}", kind="bad_image")
    return image


def encode_jpeg(image: np.ndarray, long_edge: int = 1024, quality: int = 85) -> bytes:
    """JPEG bytes of an HxWx3 uint8 RGB frame, scaled down to `long_edge` if larger."""
    image = check_image(image)
    height, width = image.shape[:2]
    scale = long_edge / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        # INTER_AREA averages the pixels it drops: no aliasing on text and fine texture.
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV fails here only when out of memory
        raise LlmInputError("OpenCV could not encode the frame as JPEG", kind="bad_image")
    return buffer.tobytes()


def jpeg_data_uri(jpeg: bytes) -> str:
    """A `data:image/jpeg;base64,…` URI (no line breaks, which some servers reject)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def probe_image() -> np.ndarray:
    """The 16x16 frame sent once to learn whether a model takes images at all."""
    ramp = np.linspace(0, 255, 16, dtype=np.uint8)
    return np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 128), axis=-1).astype(
        np.uint8
    )
