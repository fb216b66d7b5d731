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

Frames reach the device through `HostStaging`: reusable host buffers (page-locked on CUDA) that
a batch is stacked into directly, so the upload is one asynchronous copy from pinned memory
instead of an allocation, a copy into fresh pinned memory and then the upload.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from encoders._geometry import center_crop_offsets, input_error, resized_shape
from encoders.errors import EncoderInputError
from encoders.registry import PreprocessConfig

__all__ = [
    "FrameGroup",
    "HostStaging",
    "center_crop_offsets",
    "input_error",
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


def split_images(
    images: Any, size: int, staging: HostStaging | None = None
) -> tuple[list[FrameGroup], int]:
    """Validate an `images` argument and group it into same-size batches.

    Args:
        images: one HxWx3 uint8 frame (numpy array or torch tensor), a BxHxWx3 uint8 batch, a
            list of HxWx3 uint8 frames of any sizes, or a normalised float tensor Bx3xSxS.
        size: the encoder's input size S.
        staging: reusable host buffers: a list of frames is stacked into one of them instead
            of into a new tensor, and a batch array is copied into one when the buffers are
            pinned (on a CPU it is used in place). Frames already on a GPU and normalised
            tensors are not staged.

    Returns:
        The groups (one per distinct frame size) and the total number of images.

    Raises:
        EncoderInputError: when `images` is none of the above.
    """
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise input_error(images, size)
        return [FrameGroup(tuple(range(images.shape[0])), images, normalised=True)], len(images)
    if isinstance(images, (np.ndarray, torch.Tensor)):
        frames = _frames_tensor(images, size)
        batch = frames if frames.ndim == 4 else frames.unsqueeze(0)
        if batch.shape[0] == 0:
            raise EncoderInputError("images is an empty batch; pass at least one frame")
        if staging is not None and staging.pin and batch.device.type == "cpu":
            batch = staging.take(tuple(batch.shape)).copy_(batch)
        return [FrameGroup(tuple(range(batch.shape[0])), batch)], batch.shape[0]
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return _group_by_size(images, size, staging), len(images)
    raise input_error(images, size)


def _group_by_size(
    images: Sequence[Any], size: int, staging: HostStaging | None
) -> list[FrameGroup]:
    if len(images) == 0:
        raise EncoderInputError("images is an empty list; pass at least one frame")
    by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for index, image in enumerate(images):
        frame = _frames_tensor(image, size, item=index)
        if frame.ndim != 3:
            raise input_error(image, size, item=index)
        by_shape.setdefault(tuple(frame.shape), []).append((index, frame))
    return [
        FrameGroup(tuple(i for i, _ in items), _stack([f for _, f in items], staging))
        for items in by_shape.values()
    ]


def _stack(frames: list[torch.Tensor], staging: HostStaging | None) -> torch.Tensor:
    if staging is None or frames[0].device.type != "cpu":
        return torch.stack(frames)
    return torch.stack(frames, out=staging.take((len(frames), *frames[0].shape)))


class HostStaging:
    """Reusable host buffers that uint8 batches are stacked into before they are uploaded.

    For a CUDA device the buffers are page-locked, so the host-to-device copy runs
    asynchronously, overlapping the previous batch's compute. A buffer handed out by `take` is
    in use until `uploaded()` is called after the batch's copies were queued; it becomes free
    again once a CUDA event recorded then has completed, so a batch is never overwritten while
    its copy is still running. At most `max_buffers` are kept.

    Args:
        device: where the frames go; a CUDA device gets page-locked buffers and events, any
            other device plain reusable buffers.
        max_buffers: buffers kept for reuse (frames of several sizes in one call take one each).
    """

    def __init__(self, device: torch.device, max_buffers: int = 4) -> None:
        self.device = device
        self.pin = device.type == "cuda"
        self._max = max_buffers
        self._free: list[torch.Tensor] = []
        self._taken: list[torch.Tensor] = []
        self._in_flight: list[tuple[Any, list[torch.Tensor]]] = []
        self.allocations = 0

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A contiguous uint8 host tensor of `shape`, reused when a free buffer is big enough."""
        numel = math.prod(shape)
        self._reclaim(wait=False)
        buffer = self._pop_free(numel)
        if buffer is None and self._in_flight and self._count() >= self._max:
            self._reclaim(wait=True)  # full: wait for the oldest uploads rather than grow
            buffer = self._pop_free(numel)
        if buffer is None:
            if self._free and self._count() >= self._max:
                self._free.sort(key=torch.Tensor.numel)
                del self._free[0]  # the smallest free one is too small: make room
            buffer = torch.empty(numel, dtype=torch.uint8, pin_memory=self.pin)
            self.allocations += 1
        self._taken.append(buffer)
        return buffer[:numel].view(shape)

    def _pop_free(self, numel: int) -> torch.Tensor | None:
        # Tensors compare element-wise, so buffers are found by position, never by value.
        fits = [i for i, b in enumerate(self._free) if b.numel() >= numel]
        if not fits:
            return None
        return self._free.pop(min(fits, key=lambda i: self._free[i].numel()))

    def _count(self) -> int:
        in_flight = sum(len(buffers) for _, buffers in self._in_flight)
        return len(self._free) + len(self._taken) + in_flight

    def uploaded(self) -> None:
        """Every buffer taken since the last call has had its copy queued (or is done with)."""
        if not self._taken:
            return
        if self.pin:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            self._in_flight.append((event, self._taken))
        else:
            self._free.extend(self._taken)
        self._taken = []

    def _reclaim(self, wait: bool) -> None:
        still = []
        for event, buffers in self._in_flight:
            if wait:
                event.synchronize()
            if wait or event.query():
                self._free.extend(buffers)
            else:
                still.append((event, buffers))
        self._in_flight = still


def _frames_tensor(image: Any, size: int, item: int | None = None) -> torch.Tensor:
    """A uint8 HxWx3 or BxHxWx3 array/tensor as a torch tensor sharing memory where it can."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
            raise input_error(image, size, item)
        # from_numpy shares memory; it warns on read-only arrays and rejects negative strides
        # (e.g. frame[..., ::-1] for BGR->RGB), so copy those.
        if not image.flags.writeable or any(s < 0 for s in image.strides):
            image = np.array(image, copy=True)
        return torch.from_numpy(image)
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
            raise input_error(image, size, item)
        return image
    raise input_error(image, size, item)


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
        # Pinned host memory lets the copy run asynchronously with the previous batch's compute;
        # staged batches (HostStaging) already are, anything else is pinned here.
        pinned = frames if frames.is_pinned() else frames.pin_memory()
        return pinned.to(device, non_blocking=True)
    return frames.to(device)
