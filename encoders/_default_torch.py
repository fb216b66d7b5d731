"""The default encoder's torch side: the seeded random ViT and the `DefaultEncoder` around it.

`encoders.default` describes it without torch; this module, imported when one is built, builds it.
"""

from __future__ import annotations

import torch
from torch import nn

from encoders._default_config import DefaultViTConfig
from encoders.base import (
    RANDOM_WEIGHTS,
    Encoder,
    WeightsSource,
    resolve_device,
    resolve_dtype,
)
from encoders.errors import local_weights_path
from encoders.registry import OPENAI_MEAN, OPENAI_STD, ModelRef, PreprocessConfig

__all__ = ["DefaultEncoder", "RandomViT", "build"]


def build(
    ref: ModelRef,
    device: str | torch.device | None,
    *,
    weights: str,
    precision: str,
    cfg: DefaultViTConfig,
) -> DefaultEncoder:
    """`create_default_encoder` (the family's `create`; there is one model) with its
    architecture `cfg`."""
    target = resolve_device(device)
    dtype = resolve_dtype(precision, target)
    model = RandomViT(cfg)
    source = RANDOM_WEIGHTS
    if weights not in ("random", "pretrained"):
        path = local_weights_path(weights, "the default encoder")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        source = WeightsSource(f"local file {path}")
    preprocess_cfg = PreprocessConfig(cfg.image_size, OPENAI_MEAN, OPENAI_STD, "bicubic")
    return DefaultEncoder(model, ref, preprocess_cfg, source, target, dtype)


class _Block(nn.Module):
    """A pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * mlp_ratio), nn.GELU(), nn.Linear(width * mlp_ratio, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class RandomViT(nn.Module):
    """A plain ViT: patch embedding, CLS token, learned positions, pre-norm blocks, final LN."""

    def __init__(self, cfg: DefaultViTConfig) -> None:
        super().__init__()
        grid = cfg.image_size // cfg.patch_size
        self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, cfg.width))
        self.blocks = nn.ModuleList(
            _Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(cfg.width)
        self._init_weights(cfg.seed)

    def _init_weights(self, seed: int) -> None:
        # A private seeded generator: the same weights every run, whatever the global RNG did.
        generator = torch.Generator().manual_seed(seed)
        for name, param in self.named_parameters():
            if ".ln_" in name or name.startswith("norm."):
                continue  # LayerNorms keep their deterministic (1, 0) init
            if name.endswith("bias"):
                nn.init.zeros_(param)
            else:
                nn.init.normal_(param, std=0.02, generator=generator)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Bx3xSxS normalised pixels -> LayerNorm'd tokens [B, 1 + grid^2, width], CLS first."""
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class DefaultEncoder(Encoder):
    """The random ViT behind the `Encoder` interface; embedding = the normalised LN'd CLS."""

    kind = "default"

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self._module(pixels)
        return tokens, tokens[:, 0]

    @property
    def dim(self) -> int:
        return self._module.norm.normalized_shape[0]

    @property
    def token_dim(self) -> int:
        return self.dim
