"""Preprocessing geometry without torch: resize and crop sizes, and the error for images an
encoder does not take. Shared by the torch preprocessing (`encoders.preprocess`) and the numpy
one (`encoders.backends.frames`), which must not import torch.
"""

from __future__ import annotations

from typing import Any

from encoders.errors import EncoderInputError
from encoders.registry import PreprocessConfig

__all__ = ["center_crop_offsets", "input_error", "resized_shape"]


def input_error(image: Any, size: int, item: int | None = None) -> EncoderInputError:
    """The error for images an encoder does not take (what it takes, what it got); shared by
    the torch preprocessing and the backends' numpy one (`encoders.backends.frames`)."""
    if hasattr(image, "dtype") and hasattr(image, "shape"):  # a numpy array or torch tensor
        got = f"{type(image).__name__} of dtype {image.dtype} and shape {tuple(image.shape)}"
    else:
        got = type(image).__name__
    where = f" (item {item} of the list)" if item is not None else ""
    return EncoderInputError(
        "images must be uint8 HxWx3 RGB frames (a numpy array or torch tensor: one frame HxWx3, "
        "a batch BxHxWx3, or a list of HxWx3 frames of any sizes) or an already-normalised "
        f"float tensor Bx3x{size}x{size}, got {got}{where}"
    )


def resized_shape(height: int, width: int, cfg: PreprocessConfig) -> tuple[int, int]:
    """The (height, width) after the resize step, computed as torchvision and PIL do.

    Args:
        height, width: the frame's size.
        cfg: the preprocessing config.

    Returns:
        The resized (height, width).
    """
    if cfg.resize_mode == "squash":
        return cfg.size, cfg.size
    target = cfg.resize_target
    short, long = min(height, width), max(height, width)
    new_long = int(target * long / short)  # truncation, as torchvision and transformers do
    return (target, new_long) if height <= width else (new_long, target)


def center_crop_offsets(height: int, width: int, size: int, rounding: str) -> tuple[int, int]:
    """Top and left offsets of a centered `size` crop.

    Args:
        height, width: the image's size (at least `size` each).
        size: the crop's side.
        rounding: "round" (torchvision: `int(round(margin / 2))`, half to even) or "floor"
            (transformers: `margin // 2`). They differ by one pixel when a margin is odd.

    Returns:
        (top, left).
    """
    if rounding == "floor":
        return (height - size) // 2, (width - size) // 2
    return round((height - size) / 2.0), round((width - size) / 2.0)
