"""CLIP encoders through open_clip: image tokens and embeddings, and text embeddings.

Weights come from open_clip's pretrained table (downloaded into the Hugging Face hub cache), a
local state-dict file, or an explicit random initialisation. This module describes the family
without torch (its models, names and shapes: `encoders list`, `--help` and a run from a cached
export need no more); the model is built by `encoders._clip_torch`, imported when one is.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from encoders._openclip import load_open_clip, model_names
from encoders.errors import UnknownEncoderError
from encoders.registry import (
    OPENAI_MEAN,
    OPENAI_STD,
    EncoderSpec,
    Family,
    ModelRef,
    PreprocessConfig,
    parse_model_name,
    register_family,
)

if TYPE_CHECKING:
    import torch

    from encoders._clip_torch import ClipEncoder, preprocess_config_from_open_clip

__all__ = [
    "CLIP_MODELS",
    "DEFAULT_CLIP_MODEL",
    "FAMILY",
    "ClipEncoder",
    "ClipModel",
    "create_clip_encoder",
    "preprocess_config_from_open_clip",
]


@dataclass(frozen=True)
class ClipModel:
    """A registered CLIP name: its open_clip architecture, pretrained tag and shapes."""

    name: str
    arch: str
    tag: str | None
    dim: int
    token_dim: int
    image_size: int
    patch_size: int


DEFAULT_CLIP_MODEL = "ViT-B/32"

# OpenAI's weights were trained with QuickGELU; open_clip's plain names use nn.GELU, so the
# OpenAI names map to the "-quickgelu" architectures (the same weights, the right activation).
CLIP_MODELS: tuple[ClipModel, ...] = (
    ClipModel("ViT-B/32", "ViT-B-32-quickgelu", "openai", 512, 768, 224, 32),
    ClipModel("ViT-B/16", "ViT-B-16-quickgelu", "openai", 512, 768, 224, 16),
    ClipModel("ViT-L/14", "ViT-L-14-quickgelu", "openai", 768, 1024, 224, 14),
    ClipModel("ViT-L/14@336px", "ViT-L-14-336-quickgelu", "openai", 768, 1024, 336, 14),
    # A real open_clip CLIP, 64 wide and 2 layers per tower, for fast tests (random weights).
    ClipModel("tiny", "tiny", None, 64, 64, 64, 16),
)


def create_clip_encoder(
    model_name: str = DEFAULT_CLIP_MODEL,
    device: str | torch.device | None = None,
    *,
    weights: str = "pretrained",
    precision: str = "auto",
) -> ClipEncoder:
    """Build a CLIP image/text encoder with open_clip.

    Args:
        model_name: an OpenAI name ("ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"),
            "tiny" (test model), or an open_clip name with an optional tag
            ("ViT-B-32:laion2b_s34b_b79k").
        device: torch device; None picks CUDA when available, else the CPU.
        weights: "pretrained" (open_clip's weights for the name's tag, from the local cache or
            downloaded once), "random" (untrained, logged as such), or a state-dict file path.
        precision: "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16" or "bf16".

    Returns:
        The encoder, in eval mode on `device`.

    Raises:
        UnknownEncoderError: unknown model name or tag.
        WeightsUnavailableError: pretrained weights neither cached nor downloadable (fast when
            offline), or a missing weights path.

    Example:
        >>> enc = create_clip_encoder("tiny", weights="random")
        >>> enc.embed_text(["a photo of a rabbit"]).shape
        torch.Size([1, 64])
    """
    ref = parse_model_name("clip", model_name)
    return _build(ref, device, weights=weights, precision=precision)


def _build(
    ref: ModelRef, device: str | torch.device | None, *, weights: str, precision: str
) -> ClipEncoder:
    """`create_clip_encoder` for a name parsed already (the family's `create`)."""
    check_tag(ref)
    from encoders._clip_torch import build

    return build(ref, device, weights=weights, precision=precision)


def _parse_clip(name: str) -> ModelRef:
    """A registered name, or an open_clip model name with an optional pretrained tag. The
    open_clip name is checked against its config files (`encoders._openclip.model_names`,
    no import); the tag when the model is built (`check_tag`), where open_clip is imported
    anyway: a run from a cached export never imports it."""
    registered = {m.name.lower(): m for m in CLIP_MODELS}
    known = registered.get(name.strip().lower())
    if known is not None:
        return ModelRef("clip", known.name, known.arch, known.tag)
    arch, sep, tag = name.strip().partition(":")
    names = model_names()
    if "/" in arch or "@" in arch or arch not in names:
        raise UnknownEncoderError(_unknown_clip_message(name, names))
    if sep and not tag:
        raise UnknownEncoderError(f"clip {name!r}: the pretrained tag after ':' is empty")
    return ModelRef("clip", name.strip(), arch, tag or None)


def check_tag(ref: ModelRef) -> None:
    """The pretrained tag of an open_clip name exists (imports open_clip: seconds).

    Raises:
        UnknownEncoderError: an unknown tag; the message lists the model's tags.
    """
    if ref.tag is None or ref.name in {m.name for m in CLIP_MODELS}:
        return
    tags = load_open_clip().list_pretrained_tags_by_model(ref.arch)
    if ref.tag not in tags:
        raise UnknownEncoderError(
            f"unknown pretrained tag {ref.tag!r} for open_clip model {ref.arch!r}; "
            f"valid tags: {', '.join(tags) or '(none: use weights=PATH or weights=random)'}"
        )


def _tokenizer(ref: ModelRef) -> Any:
    """The model's tokenizer (texts → int64 ids [len(texts), context_length]), made without
    weights or a model. Where open_clip would use its own BPE tokenizer with the default
    cleaning (the model's config names no other: OpenAI's CLIP and most open_clip models), the
    same algorithm in `encoders.bpe`, which imports neither open_clip nor torch; otherwise, or
    when its vocabulary file is missing, open_clip's `get_tokenizer` (imports torch)."""
    from encoders._openclip import root_logging_kept, simple_tokenizer_context

    context = simple_tokenizer_context(ref.arch)
    if context is not None:
        from encoders.bpe import ClipTokenizer

        try:
            return ClipTokenizer(context)
        except (FileNotFoundError, ImportError):  # no vocabulary, ftfy or regex: open_clip's
            pass
    with root_logging_kept():
        return load_open_clip().get_tokenizer(ref.arch)


def _unknown_clip_message(name: str, open_clip_names: list[str]) -> str:
    registered = ", ".join(m.name for m in CLIP_MODELS)
    close = difflib.get_close_matches(name.partition(":")[0], open_clip_names, n=5, cutoff=0.6)
    hint = f"; closest open_clip names: {', '.join(close)}" if close else ""
    return (
        f"unknown clip model {name!r}; valid: {registered}, or any of the "
        f"{len(open_clip_names)} open_clip model names (open_clip.list_models()) with an "
        f"optional ':pretrained-tag', e.g. ViT-B-32:laion2b_s34b_b79k{hint}. "
        "OpenAI names (with '/') take no tag."
    )


def _clip_spec(m: ClipModel) -> EncoderSpec:
    weights = (
        f"open_clip pretrained {m.tag!r} (Hugging Face cache), or a local file"
        if m.tag
        else "random weights (test model), or a local file"
    )
    return EncoderSpec(
        kind="clip",
        model=m.name,
        dim=m.dim,
        token_dim=m.token_dim,
        tokens=(m.image_size // m.patch_size) ** 2 + 1,
        preprocess=PreprocessConfig(m.image_size, OPENAI_MEAN, OPENAI_STD),
        weights=weights,
        has_text=True,
    )


FAMILY = register_family(
    Family(
        kind="clip",
        default_model=DEFAULT_CLIP_MODEL,
        parse=_parse_clip,
        specs=lambda: [_clip_spec(m) for m in CLIP_MODELS],
        create=_build,
        has_text=True,
        backends=("torch", "openvino"),
        check=check_tag,
        tokenizer=_tokenizer,
    )
)


# The torch side, read from `encoders._clip_torch` when asked for (importing it imports torch).
_TORCH_SIDE = ("ClipEncoder", "preprocess_config_from_open_clip", "_pretrained_checkpoint",
               "_resolve_weights", "_hub_filenames", "_needs_tag")  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _TORCH_SIDE:
        return getattr(importlib.import_module("encoders._clip_torch"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
