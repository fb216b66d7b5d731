"""DINOv2 encoders through transformers' `Dinov2Model` (self-supervised, image only).

Weights come from `from_pretrained` (Hugging Face hub cache, downloaded once), a local
`save_pretrained` folder or state-dict file, or a random initialisation built from each size's
real hyper-parameters. transformers is imported lazily.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from encoders._hub import cached_hub_file, hub_unreachable_reason
from encoders.base import (
    RANDOM_WEIGHTS,
    Encoder,
    WeightsSource,
    local_weights_path,
    resolve_device,
    resolve_dtype,
    seeded,
)
from encoders.errors import UnknownEncoderError, weights_unavailable
from encoders.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderSpec,
    Family,
    ModelRef,
    PreprocessConfig,
    parse_model_name,
    register_family,
)

__all__ = [
    "DEFAULT_DINOV2_SIZE",
    "DINOV2_PREPROCESS",
    "DINOV2_SIZES",
    "FAMILY",
    "Dinov2Encoder",
    "Dinov2Size",
    "create_dinov2_encoder",
    "dinov2_config",
    "dinov2_size",
    "preprocess_config_from_hf",
    "preprocess_config_to_hf",
]

logger = logging.getLogger("encoders")

_PROCESSOR_FILE = "preprocessor_config.json"
_STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
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


def create_dinov2_encoder(
    size: str = DEFAULT_DINOV2_SIZE,
    device: str | torch.device | None = None,
    *,
    weights: str = "pretrained",
    precision: str = "auto",
) -> Dinov2Encoder:
    """Build a DINOv2 image encoder with transformers.

    Args:
        size: "small", "base", "large" or "giant" (hub ids facebook/dinov2-<size>).
        device: torch device; None picks CUDA when available, else the CPU.
        weights: "pretrained" (`from_pretrained`, from the local cache or downloaded once),
            "random" (untrained, logged as such), or a path: a `save_pretrained` folder or a
            state-dict file.
        precision: "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16" or "bf16".

    Returns:
        The encoder, in eval mode on `device`.

    Raises:
        UnknownEncoderError: unknown size.
        WeightsUnavailableError: pretrained weights neither cached nor downloadable (fast when
            offline), or a missing weights path.
    """
    ref = parse_model_name("dinov2", size)
    return _build(ref, device, weights=weights, precision=precision)


def _build(
    ref: ModelRef, device: str | torch.device | None, *, weights: str, precision: str
) -> Dinov2Encoder:
    """`create_dinov2_encoder` for a name parsed already (the family's `create`)."""
    target = resolve_device(device)
    dtype = resolve_dtype(precision, target)
    model, preprocess_cfg, source = _load(ref, weights)
    return Dinov2Encoder(model, ref, preprocess_cfg, source, target, dtype)


def _parse_dinov2(name: str) -> ModelRef:
    key = name.strip().lower().removeprefix("facebook/").removeprefix("dinov2-")
    for size in DINOV2_SIZES:
        if size.name == key:
            return ModelRef("dinov2", size.name, size.hub_id)
    valid = ", ".join(s.name for s in DINOV2_SIZES)
    raise UnknownEncoderError(f"unknown dinov2 size {name!r}; valid sizes: {valid}")


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


def _load(ref: ModelRef, weights: str) -> tuple[nn.Module, PreprocessConfig, WeightsSource]:
    if weights == "random":
        return _random_model(ref), DINOV2_PREPROCESS, RANDOM_WEIGHTS
    if weights == "pretrained":
        return _pretrained(ref)
    path = local_weights_path(weights, f"dinov2 {ref.name!r}")
    if path.is_dir():
        from transformers import Dinov2Model

        model = Dinov2Model.from_pretrained(path, local_files_only=True)
        if model.config.hidden_size != dinov2_size(ref).hidden_size:
            logger.warning(
                "dinov2 %r: the folder %s holds a model of width %d, not %d; using the folder's",
                ref.name,
                path,
                model.config.hidden_size,
                dinov2_size(ref).hidden_size,
            )
        return model, _folder_preprocess(path), WeightsSource(f"local folder {path}")
    model = _random_model(ref)
    model.load_state_dict(_read_state_dict(path))
    return model, DINOV2_PREPROCESS, WeightsSource(f"local file {path}")


def _random_model(ref: ModelRef) -> nn.Module:
    from transformers import Dinov2Model

    with seeded(0):  # the same "random" model every run
        return Dinov2Model(dinov2_config(dinov2_size(ref)))


def _pretrained(ref: ModelRef) -> tuple[nn.Module, PreprocessConfig, WeightsSource]:
    """`from_pretrained` from the cache first; the network only after a quick probe."""
    from transformers import Dinov2Model

    what = f"dinov2 {ref.name!r} ({ref.arch})"
    try:
        model, how = Dinov2Model.from_pretrained(ref.arch, local_files_only=True), "cache"
    except OSError as not_cached:
        reason = hub_unreachable_reason(ref.arch, "config.json")
        if reason is not None:
            raise weights_unavailable(what, reason, library="transformers") from not_cached
        try:
            model, how = Dinov2Model.from_pretrained(ref.arch), "downloaded"
        except OSError as err:
            message = f"download failed: {err}"
            raise weights_unavailable(what, message, library="transformers") from err
    processor_file = cached_hub_file(ref.arch, [_PROCESSOR_FILE])
    if processor_file is None and how == "downloaded":
        processor_file = _download_if_present(ref.arch, _PROCESSOR_FILE)
    preprocess_cfg = _read_preprocess(processor_file) if processor_file else DINOV2_PREPROCESS
    return model, preprocess_cfg, WeightsSource(f"transformers pretrained {ref.arch!r} ({how})")


def _download_if_present(repo_id: str, filename: str) -> str | None:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename)
    except OSError:  # no such file in the repo: the default DINOv2 processor applies
        return None


def _folder_preprocess(folder: Path) -> PreprocessConfig:
    processor_file = folder / _PROCESSOR_FILE
    return _read_preprocess(processor_file) if processor_file.is_file() else DINOV2_PREPROCESS


def _read_preprocess(path: str | Path) -> PreprocessConfig:
    with open(path, encoding="utf-8") as f:
        return preprocess_config_from_hf(json.load(f))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


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


class Dinov2Encoder(Encoder):
    """A transformers `Dinov2Model`: tokens = last_hidden_state, embedding = pooler_output."""

    kind = "dinov2"

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._module(pixel_values=pixels)
        return out.last_hidden_state, out.pooler_output

    @property
    def dim(self) -> int:
        return self._module.config.hidden_size

    @property
    def token_dim(self) -> int:
        return self._module.config.hidden_size

    def save(self, path: str | Path) -> Path:
        """Write the weights: a state-dict file for a .pt/.pth/.bin/.safetensors path, else a
        `save_pretrained` folder with a preprocessor_config.json. `weights=path` reloads either.

        Returns:
            The path written.
        """
        path = Path(path).expanduser()
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in self._module.state_dict().items()}, path)
            return path
        if path.suffix in _STATE_DICT_SUFFIXES:
            return super().save(path)
        self._module.save_pretrained(path)
        with open(path / _PROCESSOR_FILE, "w", encoding="utf-8") as f:
            json.dump(preprocess_config_to_hf(self._preprocess_cfg), f, indent=2)
        return path


def _dinov2_spec(s: Dinov2Size) -> EncoderSpec:
    return EncoderSpec(
        kind="dinov2",
        model=s.name,
        dim=s.hidden_size,
        token_dim=s.hidden_size,
        tokens=(224 // s.patch_size) ** 2 + 1,
        preprocess=DINOV2_PREPROCESS,
        weights=f"transformers from_pretrained {s.hub_id!r} (Hugging Face cache), or a local "
        "save_pretrained folder / state-dict file",
        has_text=Dinov2Encoder.has_text,
    )


FAMILY = register_family(
    Family(
        kind="dinov2",
        default_model=DEFAULT_DINOV2_SIZE,
        parse=_parse_dinov2,
        specs=lambda: [_dinov2_spec(s) for s in DINOV2_SIZES],
        create=_build,
        has_text=Dinov2Encoder.has_text,
        backends=("torch", "openvino"),
    )
)
