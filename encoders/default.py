"""The default encoder: a small random ViT, for running the pipeline without any weights.

It is random by design (seeded, so the same every run): it exercises every stage at realistic
cost (4 layers x 768 wide, 50 tokens per 224 px frame) but its embeddings mean nothing. Its info
and repr say "random weights". A state-dict file written by `save()` can be loaded instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from encoders.base import (
    RANDOM_WEIGHTS,
    Encoder,
    WeightsSource,
    local_weights_path,
    resolve_device,
    resolve_dtype,
)
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

__all__ = [
    "DEFAULT_MODEL",
    "FAMILY",
    "DefaultEncoder",
    "DefaultViTConfig",
    "RandomViT",
    "create_default_encoder",
]

DEFAULT_MODEL = "vit-4x768"


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
    target = resolve_device(device)
    dtype = resolve_dtype(precision, target)
    cfg = DefaultViTConfig()
    model = RandomViT(cfg)
    source = RANDOM_WEIGHTS
    if weights not in ("random", "pretrained"):
        path = local_weights_path(weights, "the default encoder")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        source = WeightsSource(f"local file {path}")
    preprocess_cfg = PreprocessConfig(cfg.image_size, OPENAI_MEAN, OPENAI_STD, "bicubic")
    return DefaultEncoder(model, ref, preprocess_cfg, source, target, dtype)


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
            has_text=DefaultEncoder.has_text,
        )
    ]


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


FAMILY = register_family(
    Family(
        kind="default",
        default_model=DEFAULT_MODEL,
        parse=_parse,
        specs=_specs,
        create=_build,
        has_text=DefaultEncoder.has_text,
        backends=("torch", "openvino"),
    )
)
