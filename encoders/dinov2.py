"""DINOv2 encoders through transformers' `Dinov2Model` (self-supervised, image only).

Weights come from `from_pretrained` (Hugging Face hub cache, downloaded once), a local
`save_pretrained` folder or state-dict file, or a random initialisation built from each size's
real hyper-parameters. This module describes the family without torch (sizes, names,
preprocessing); the model is built by `encoders._dinov2_torch`, imported when one is.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from encoders._dinov2_config import (
    DEFAULT_DINOV2_SIZE,
    DINOV2_PREPROCESS,
    DINOV2_SIZES,
    Dinov2Size,
    dinov2_config,
    dinov2_size,
    preprocess_config_from_hf,
    preprocess_config_to_hf,
)
from encoders.errors import UnknownEncoderError
from encoders.registry import (
    EncoderSpec,
    Family,
    ModelRef,
    parse_model_name,
    register_family,
)

if TYPE_CHECKING:
    import torch

    from encoders._dinov2_torch import Dinov2Encoder

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
    from encoders._dinov2_torch import build

    return build(ref, device, weights=weights, precision=precision)


def _parse_dinov2(name: str) -> ModelRef:
    key = name.strip().lower().removeprefix("facebook/").removeprefix("dinov2-")
    for size in DINOV2_SIZES:
        if size.name == key:
            return ModelRef("dinov2", size.name, size.hub_id)
    valid = ", ".join(s.name for s in DINOV2_SIZES)
    raise UnknownEncoderError(f"unknown dinov2 size {name!r}; valid sizes: {valid}")


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
        has_text=False,
    )


FAMILY = register_family(
    Family(
        kind="dinov2",
        default_model=DEFAULT_DINOV2_SIZE,
        parse=_parse_dinov2,
        specs=lambda: [_dinov2_spec(s) for s in DINOV2_SIZES],
        create=_build,
        has_text=False,
        backends=("torch", "openvino"),
    )
)


def __getattr__(name: str) -> Any:
    # the torch side, read from `encoders._dinov2_torch` when asked for (it imports torch)
    if name == "Dinov2Encoder":
        return importlib.import_module("encoders._dinov2_torch").Dinov2Encoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
