"""Frames to model input with numpy: the preprocessing of a backend that does not run torch.

The same steps as `encoders.preprocess`, which runs them as batched torch ops on the encoder's
device: resize the shortest side, center crop, `/255 - mean, /std`. Here they run on the host
in numpy, so a backend such as OpenVINO needs no torch operation per frame:

- The resize is PIL's own, the one the reference transforms use (open_clip's and transformers'
  image processors resize PIL images), and is only done for a frame that is not at the resize
  size already. In the pipeline frames arrive at that size (the source scales them while
  decoding, `streamer.sources.options.AnalysisSize`), so only the crop and the normalisation
  run here.
- The crop uses the same offsets (`center_crop_offsets`, the reference library's rounding).
- The normalisation is the torch path's multiply-add with the same float32 constants, so a
  frame at the resize size gives the torch path's pixels (to the last bit of float32).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image

from encoders._geometry import center_crop_offsets, input_error, resized_shape
from encoders.errors import EncoderInputError
from encoders.registry import PreprocessConfig

__all__ = ["PixelGroup", "encode_frames", "frames_to_pixels", "pixel_groups"]

_RESAMPLE = {"bicubic": PIL.Image.Resampling.BICUBIC, "bilinear": PIL.Image.Resampling.BILINEAR}

#: model input, float32 Bx3xSxS -> (tokens [B, T, D], pooled [B, dim]), both float32
RunPixels = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PixelGroup:
    """Model input for images of one size, and where they sit in the caller's batch.

    Attributes:
        indices: positions of these images in the caller's input.
        pixels: float32 Bx3xSxS, contiguous.
    """

    indices: tuple[int, ...]
    pixels: np.ndarray


def encode_frames(
    images: Any, cfg: PreprocessConfig, run: RunPixels
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and L2-normalised embeddings of `images`, in input order, with `run` as the model.

    Args:
        images: as `Encoder.encode` takes them: a uint8 HxWx3 frame, a BxHxWx3 batch, a list of
            frames of any sizes, or normalised float model input Bx3xSxS (numpy, or a torch
            tensor, which is read as numpy).
        cfg: the encoder's preprocessing.
        run: the backend's model.

    Returns:
        (tokens [B, T, D] float32, embeddings [B, dim] float32 with unit norm).

    Raises:
        EncoderInputError: for images in any other form.
    """
    groups, count = pixel_groups(images, cfg)
    results = [run(group.pixels) for group in groups]
    tokens = _merge([r[0] for r in results], groups, count)
    pooled = _merge([r[1] for r in results], groups, count).astype(np.float32, copy=False)
    norms = np.linalg.norm(pooled, axis=-1, keepdims=True)
    return tokens, pooled / np.maximum(norms, 1e-12)  # as torch's F.normalize (eps 1e-12)


def pixel_groups(images: Any, cfg: PreprocessConfig) -> tuple[list[PixelGroup], int]:
    """Validate `images` and turn them into model input, one group per frame size.

    Returns:
        The groups and the number of images.

    Raises:
        EncoderInputError: for images that are not frames or model input.
    """
    size = cfg.size
    if _is_torch(images):
        images = images.detach().cpu().numpy()
    if isinstance(images, np.ndarray) and images.dtype.kind == "f":
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise input_error(images, size)
        pixels = np.ascontiguousarray(images, dtype=np.float32)
        return [PixelGroup(tuple(range(len(pixels))), pixels)], len(pixels)
    if isinstance(images, np.ndarray):
        batch = _frames(images, size)
        batch = batch if batch.ndim == 4 else batch[None]
        if len(batch) == 0:
            raise EncoderInputError("images is an empty batch; pass at least one frame")
        return [PixelGroup(tuple(range(len(batch))), frames_to_pixels(batch, cfg))], len(batch)
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return _by_size(images, cfg), len(images)
    raise input_error(images, size)


def frames_to_pixels(frames: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Same-size uint8 BxHxWx3 RGB frames → normalised float32 Bx3xSxS model input."""
    height, width = resized_shape(frames.shape[1], frames.shape[2], cfg)
    if (height, width) != frames.shape[1:3]:
        frames = np.stack([_resize(frame, width, height, cfg.interpolation) for frame in frames])
    size = cfg.size
    if cfg.crop:
        top, left = center_crop_offsets(height, width, size, cfg.crop_rounding)
        frames = frames[:, top : top + size, left : left + size]
    # The torch path's constants, computed in float32 as it computes them.
    std = np.asarray(cfg.std, dtype=np.float32)
    scale = np.float32(1.0) / (np.float32(255.0) * std)
    bias = -np.asarray(cfg.mean, dtype=np.float32) / std
    pixels = np.empty((len(frames), 3, size, size), dtype=np.float32)
    for channel in range(3):
        np.multiply(frames[..., channel], scale[channel], out=pixels[:, channel])
        pixels[:, channel] += bias[channel]
    return pixels


def _resize(frame: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    image = PIL.Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((width, height), _RESAMPLE[interpolation]))


def _by_size(images: Sequence[Any], cfg: PreprocessConfig) -> list[PixelGroup]:
    if len(images) == 0:
        raise EncoderInputError("images is an empty list; pass at least one frame")
    by_shape: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    for index, image in enumerate(images):
        frame = _frames(image.detach().cpu().numpy() if _is_torch(image) else image, cfg.size)
        if frame.ndim != 3:
            raise input_error(image, cfg.size, item=index)
        by_shape.setdefault(frame.shape, []).append((index, frame))
    groups = []
    for items in by_shape.values():
        frames = np.stack([frame for _, frame in items])
        groups.append(PixelGroup(tuple(i for i, _ in items), frames_to_pixels(frames, cfg)))
    return groups


def _frames(image: Any, size: int, item: int | None = None) -> np.ndarray:
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim not in (3, 4)
        or image.shape[-1] != 3
    ):
        raise input_error(image, size, item)
    return image


def _merge(parts: list[np.ndarray], groups: list[PixelGroup], count: int) -> np.ndarray:
    """Concatenate per-size-group results and put them back in the caller's order."""
    if len(parts) == 1:
        return parts[0]
    merged = np.concatenate(parts)
    order = np.fromiter((i for g in groups for i in g.indices), dtype=np.int64, count=count)
    out = np.empty_like(merged)
    out[order] = merged
    return out


def _is_torch(value: Any) -> bool:
    # Checked by name: this module must not import torch for the numpy frames it is fed.
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")
