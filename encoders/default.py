"""The default encoder: a small random ViT, for running the pipeline without any weights.

It is random by design (seeded, so the same every run): it exercises every stage at realistic
cost (4 layers x 768 wide, 50 tokens per 224 px frame) but its embeddings mean nothing. Its info
and repr say "random weights". A state-dict file written by `save()` can be loaded instead.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from encoders._default_config import DefaultViTConfig
from encoders.errors import UnknownEncoderError
from encoders.registry import (
    OPENAI_MEAN,
    OPENAI_STD,
    EncoderSpec,
    Family,
    ModelRef,
    PreprocessConfig,
    register_family,
)

if TYPE_CHECKING:
    import torch

    from encoders._default_torch import DefaultEncoder, RandomViT

__all__ = [
    "DEFAULT_MODEL",
    "FAMILY",
    "DefaultEncoder",
    "DefaultViTConfig",
    "RandomViT",
    "create_default_encoder",
]

DEFAULT_MODEL = "vit-4x768"


def create_default_encoder(
    device: str | torch.device | None = None,
    *,
    weights: str = "random",
    precision: str = "auto",
) -> DefaultEncoder:
    """Build the default encoder, a seeded random ViT (4 layers, 768 wide, patch 32, 224 px).

    Args:
        device: torch device; None picks CUDA when available, else the CPU.
        weights: "random" (the design; "pretrained" means the same, as there is nothing to
            download) or a state-dict file written by `save()`.
        precision: "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16" or "bf16".

    Returns:
        The encoder, in eval mode on `device`; it logs a "random weights" warning.
    """
    return _build(_parse(DEFAULT_MODEL), device, weights=weights, precision=precision)


def _build(
    ref: ModelRef, device: str | torch.device | None, *, weights: str, precision: str
) -> DefaultEncoder:
    """`create_default_encoder` (the family's `create`; there is one model)."""
    from encoders._default_torch import build

    return build(ref, device, weights=weights, precision=precision, cfg=DefaultViTConfig())


def _parse(name: str) -> ModelRef:
    if name.strip().lower() != DEFAULT_MODEL:
        raise UnknownEncoderError(
            f"unknown default-encoder model {name!r}; valid: {DEFAULT_MODEL} (or None)"
        )
    return ModelRef("default", DEFAULT_MODEL, DEFAULT_MODEL)


def _specs() -> list[EncoderSpec]:
    cfg = DefaultViTConfig()
    return [
        EncoderSpec(
            kind="default",
            model=DEFAULT_MODEL,
            dim=cfg.width,
            token_dim=cfg.width,
            tokens=(cfg.image_size // cfg.patch_size) ** 2 + 1,
            preprocess=PreprocessConfig(cfg.image_size, OPENAI_MEAN, OPENAI_STD),
            weights="random weights by design (seeded), or a local state-dict file",
            has_text=False,
        )
    ]


FAMILY = register_family(
    Family(
        kind="default",
        default_model=DEFAULT_MODEL,
        parse=_parse,
        specs=_specs,
        create=_build,
        has_text=False,
        backends=("torch", "openvino"),
    )
)


def __getattr__(name: str) -> Any:
    # the torch side, read from `encoders._default_torch` when asked for (it imports torch)
    if name in ("DefaultEncoder", "RandomViT"):
        return getattr(importlib.import_module("encoders._default_torch"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
