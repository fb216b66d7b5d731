"""The default encoder's architecture, without torch: shared by the family's description
(`encoders.default`) and its torch side (`encoders._default_torch`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DefaultViTConfig"]


@dataclass(frozen=True)
class DefaultViTConfig:
    """The default encoder's architecture: a small pre-norm ViT with a CLS token."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 4
    heads: int = 12
    mlp_ratio: int = 4
    seed: int = 0  # random init is seeded so a "random" run is the same run to run
