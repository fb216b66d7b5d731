"""`create_encoder`: the one front door over the registered families' factories."""

from __future__ import annotations

import torch

from encoders.base import Encoder
from encoders.registry import family, parse_model_name

__all__ = ["create_encoder"]


def create_encoder(
    kind: str,
    model: str | None = None,
    *,
    weights: str = "pretrained",
    device: str | torch.device | None = None,
    precision: str = "auto",
) -> Encoder:
    """Build an encoder by kind and model name.

    Args:
        kind: a registered kind: "clip", "dinov2" or "default" (`encoders.registry.kinds()`).
        model: a model name of that kind (see `parse_model_name`); None for the kind's default
            (ViT-B/32, large, vit-4x768).
        weights: "pretrained" (the library's cached weights, downloaded once), "random"
            (untrained, logged), or a local checkpoint path. The default encoder is random by
            design: "pretrained" gives its (labelled) random weights.
        device: torch device; None picks CUDA when available, else the CPU.
        precision: "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16" or "bf16".

    Returns:
        The encoder.

    Raises:
        UnknownEncoderError: unknown kind or model; the message lists the valid names.
        WeightsUnavailableError: weights neither cached nor downloadable, or a missing path.

    Example:
        >>> enc = create_encoder("clip", "tiny", weights="random", device="cpu")
        >>> enc.info.dim
        64
    """
    ref = parse_model_name(kind, model)
    return family(ref.kind).create(ref, device, weights=weights, precision=precision)
