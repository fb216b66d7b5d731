"""Streaming preprocessing: uint8 RGB frames to normalised model input, batched on the device.

The reference transforms (open_clip's `image_transform_v2`, transformers' PIL image processors)
work one PIL image at a time on the CPU. Here a whole same-size group of frames is moved to the
encoder's device once and transformed in a handful of batched tensor ops, reproducing the
reference arithmetic:

1. resize the shortest side like torchvision/PIL: `new_long = int(size * long / short)`;
2. `F.interpolate(..., antialias=True)`: its bicubic kernel (a = -0.5) and its antialiasing on
   downscale are PIL's;
3. clamp to 0..255 and round, because PIL resizes into a uint8 image;
4. center crop with the reference library's rounding of odd margins;
5. `/255`, `-mean`, `/std` folded into one multiply-add.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from encoders.errors import EncoderInputError
from encoders.registry import PreprocessConfig

__all__ = [
    "FrameGroup",
    "center_crop_offsets",
    "preprocess_frames",
    "resized_shape",
    "split_images",
]


@dataclass(frozen=True)
class FrameGroup:
    """Images of one size, and where they sit in the caller's batch.

    Attributes:
        indices: positions of these images in the caller's input.
        data: uint8 Bx H x W x3 frames, or (when `normalised`) float Bx3xSxS model input.
        normalised: True when `data` is already model input and skips preprocessing.
    """

    indices: tuple[int, ...]
    data: torch.Tensor
    normalised: bool = False


def split_images(images: Any, size: int) -> tuple[list[FrameGroup], int]:
    """Validate an `images` argument and group it into same-size batches.

    Args:
        images: one HxWx3 uint8 frame (numpy array or torch tensor), a BxHxWx3 uint8 batch, a
            list of HxWx3 uint8 frames of any sizes, or a normalised float tensor Bx3xSxS.
        size: the encoder's input size S.

    Returns:
        The groups (one per distinct frame size) and the total number of images.

    Raises:
        EncoderInputError: when `images` is none of the above.
    """
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise _input_error(images, size)
        return [FrameGroup(tuple(range(images.shape[0])), images, normalised=True)], len(images)
    if isinstance(images, (np.ndarray, torch.Tensor)):
        frames = _frames_tensor(images, size)
        batch = frames if frames.ndim == 4 else frames.unsqueeze(0)
        if batch.shape[0] == 0:
            raise EncoderInputError("images is an empty batch; pass at least one frame")
        return [FrameGroup(tuple(range(batch.shape[0])), batch)], batch.shape[0]
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return _group_by_size(images, size), len(images)
    raise _input_error(images, size)


def _group_by_size(images: Sequence[Any], size: int) -> list[FrameGroup]:
    if len(images) == 0:
        raise EncoderInputError("images is an empty list; pass at least one frame")
    by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for index, image in enumerate(images):
        frame = _frames_tensor(image, size, item=index)
        if frame.ndim != 3:
            raise _input_error(image, size, item=index)
        by_shape.setdefault(tuple(frame.shape), []).append((index, frame))
    return [
        FrameGroup(tuple(i for i, _ in items), torch.stack([f for _, f in items]))
        for items in by_shape.values()
    ]


def _frames_tensor(image: Any, size: int, item: int | None = None) -> torch.Tensor:
    """A uint8 HxWx3 or BxHxWx3 array/tensor as a torch tensor sharing memory where it can."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
            raise _input_error(image, size, item)
        # from_numpy shares memory; it warns on read-only arrays and rejects negative strides
        # (e.g. frame[..., ::-1] for BGR->RGB), so copy those.
        if not image.flags.writeable or any(s < 0 for s in image.strides):
            image = np.array(image, copy=True)
        return torch.from_numpy(image)
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
            raise _input_error(image, size, item)
        return image
    raise _input_error(image, size, item)


def _input_error(image: Any, size: int, item: int | None = None) -> EncoderInputError:
    if isinstance(image, (np.ndarray, torch.Tensor)):
        got = f"{type(image).__name__} of dtype {image.dtype} and shape {tuple(image.shape)}"
    else:
        got = type(image).__name__
    where = f" (item {item} of the list)" if item is not None else ""
    return EncoderInputError(
        "images must be uint8 HxWx3 RGB frames (a numpy array or torch tensor: one frame HxWx3, "
        "a batch BxHxWx3, or a list of HxWx3 frames of any sizes) or an already-normalised "
        f"float tensor Bx3x{size}x{size}, got {got}{where}"
    )


def preprocess_frames(
    frames: torch.Tensor,
    cfg: PreprocessConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Turn same-size uint8 frames into normalised model input on `device`, in one batch.

    Args:
        frames: uint8 BxHxWx3 RGB frames, on the host or already on `device`.
        cfg: the encoder's preprocessing config.
        device: where the model runs; frames go there before any arithmetic.
        dtype: the model's dtype; the math runs in float32 and is cast at the end.

    Returns:
        Bx3xSxS tensor on `device` in `dtype`, S = `cfg.size`.
    """
    x = _to_device(frames, device).permute(0, 3, 1, 2).float()
    height, width = resized_shape(x.shape[-2], x.shape[-1], cfg)
    if (height, width) != tuple(x.shape[-2:]):  # PIL returns an unchanged copy at equal size
        x = F.interpolate(
            x, size=(height, width), mode=cfg.interpolation, align_corners=False, antialias=True
        )
        x = x.clamp_(0.0, 255.0).round_()
    if cfg.crop:
        top, left = center_crop_offsets(height, width, cfg.size, cfg.crop_rounding)
        x = x[:, :, top : top + cfg.size, left : left + cfg.size]
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1)
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1)
    # (x / 255 - mean) / std == x * (1 / (255 std)) + (-mean / std): one fused multiply-add.
    x = torch.addcmul(-mean / std, x, 1.0 / (255.0 * std))
    return x.to(dtype).contiguous()


def _to_device(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    if frames.device == device:
        return frames
    if device.type == "cuda" and frames.device.type == "cpu":
        # Pinned host memory lets the copy run asynchronously with the previous batch's compute.
        return frames.pin_memory().to(device, non_blocking=True)
    return frames.to(device)


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
