"""DINOv2's sizes and preprocessing, without torch: shared by the family's description
(`encoders.dinov2`) and its torch side (`encoders._dinov2_torch`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from encoders.registry import IMAGENET_MEAN, IMAGENET_STD, ModelRef, PreprocessConfig

__all__ = [
    "DEFAULT_DINOV2_SIZE",
    "DINOV2_PREPROCESS",
    "DINOV2_SIZES",
    "Dinov2Size",
    "dinov2_config",
    "dinov2_size",
    "preprocess_config_from_hf",
    "preprocess_config_to_hf",
]

# PIL resampling codes used in transformers' processor configs.
_RESAMPLE = {3: "bicubic", 2: "bilinear"}


@dataclass(frozen=True)
class Dinov2Size:
    """The real hyper-parameters of one DINOv2 size (facebook/dinov2-{name} config.json)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    use_swiglu_ffn: bool = False
    patch_size: int = 14
    image_size: int = 518  # the size the position embeddings were trained at; interpolated

    @property
    def hub_id(self) -> str:
        return f"facebook/dinov2-{self.name}"


DEFAULT_DINOV2_SIZE = "large"

DINOV2_SIZES: tuple[Dinov2Size, ...] = (
    Dinov2Size("small", 384, 12, 6),
    Dinov2Size("base", 768, 12, 12),
    Dinov2Size("large", 1024, 24, 16),
    Dinov2Size("giant", 1536, 40, 24, use_swiglu_ffn=True),
)

# The facebook/dinov2-* preprocessor_config.json (BitImageProcessor): shortest edge 256,
# bicubic, center crop 224 (floor rounding), ImageNet mean/std.
DINOV2_PREPROCESS = PreprocessConfig(
    size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    interpolation="bicubic",
    resize_size=256,
    crop_rounding="floor",
)


def dinov2_size(ref: ModelRef) -> Dinov2Size:
    """The hyper-parameters of a parsed DINOv2 reference."""
    return next(s for s in DINOV2_SIZES if s.name == ref.name)


def dinov2_config(size: Dinov2Size) -> Any:
    """A `Dinov2Config` with the real hyper-parameters of facebook/dinov2-<size>."""
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=size.hidden_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        mlp_ratio=4,
        image_size=size.image_size,
        patch_size=size.patch_size,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        use_swiglu_ffn=size.use_swiglu_ffn,
    )


def preprocess_config_from_hf(cfg: dict[str, Any]) -> PreprocessConfig:
    """Convert a transformers image-processor config (preprocessor_config.json).

    Args:
        cfg: the JSON dict, e.g. facebook/dinov2-*: shortest_edge 256, resample 3 (bicubic),
            crop 224x224, ImageNet mean/std.

    Returns:
        The equivalent `PreprocessConfig` (center crop with transformers' floor rounding).
    """
    size, crop = cfg.get("size", {}), cfg.get("crop_size", {})
    do_crop = cfg.get("do_center_crop", True)
    if "shortest_edge" in size:
        resize_mode, resize_to = "shortest", int(size["shortest_edge"])
    elif size.get("height") == size.get("width") and size.get("height"):
        resize_mode, resize_to = "squash", int(size["height"])
    else:
        raise ValueError(f"unsupported image processor size {size!r}")
    if do_crop and crop.get("height") != crop.get("width"):
        raise ValueError(f"non-square crop sizes are not supported, got {crop!r}")
    resample = cfg.get("resample", 3)
    if resample not in _RESAMPLE:
        raise ValueError(f"unsupported resample {resample!r}; supported: {sorted(_RESAMPLE)}")
    return PreprocessConfig(
        size=int(crop["height"]) if do_crop else resize_to,
        mean=tuple(cfg["image_mean"]),
        std=tuple(cfg["image_std"]),
        interpolation=_RESAMPLE[resample],
        resize_mode=resize_mode,
        crop=bool(do_crop),
        resize_size=resize_to,
        crop_rounding="floor",
    )


def preprocess_config_to_hf(cfg: PreprocessConfig) -> dict[str, Any]:
    """The inverse of `preprocess_config_from_hf`, as a BitImageProcessor config."""
    size_key = {"shortest_edge": cfg.resize_target}
    if cfg.resize_mode == "squash":
        size_key = {"height": cfg.resize_target, "width": cfg.resize_target}
    resample = {name: code for code, name in _RESAMPLE.items()}[cfg.interpolation]
    return {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True,
        "size": size_key,
        "resample": resample,
        "do_center_crop": cfg.crop,
        "crop_size": {"height": cfg.size, "width": cfg.size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(cfg.mean),
        "image_std": list(cfg.std),
        "do_convert_rgb": True,
    }
