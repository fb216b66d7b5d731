"""The encoder registry: frozen configs, the one model-name parser and the spec table.

Every name a user can type (`create_encoder(kind, model)`, the CLI's `--encoder/--model`) goes
through `parse_model_name`, which turns it into a `ModelRef`. The family modules only ever see a
`ModelRef`, so there is one place that knows what "ViT-B/32" or "giant" means.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from encoders._openclip import load_open_clip
from encoders.errors import UnknownEncoderError

__all__ = [
    "CLIP_MODELS",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_DINOV2_SIZE",
    "DEFAULT_MODEL",
    "DINOV2_PREPROCESS",
    "DINOV2_SIZES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINDS",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "ClipModel",
    "DefaultViTConfig",
    "Dinov2Size",
    "EncoderSpec",
    "ModelRef",
    "PreprocessConfig",
    "dinov2_size",
    "list_encoders",
    "parse_model_name",
]

KINDS = ("clip", "dinov2", "default")

# Registry data: the normalisation constants the libraries ship with their weights. Encoders
# read their live config from the loaded model; these only describe the registered specs.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = ("bicubic", "bilinear")
_RESIZE_MODES = ("shortest", "squash")
_CROP_ROUNDINGS = ("round", "floor")


@dataclass(frozen=True)
class PreprocessConfig:
    """How uint8 frames become model input; it travels with the model, never hard-coded.

    Attributes:
        size: side of the square model input (the crop size).
        mean: per-channel mean on the 0..1 scale.
        std: per-channel std on the 0..1 scale.
        interpolation: "bicubic" or "bilinear".
        resize_mode: "shortest" (shortest side to `resize_size`, keep aspect) or "squash".
        crop: center-crop to `size` after resizing.
        resize_size: target of the shortest side; None means `size` (CLIP). DINOv2 resizes to
            256 and crops 224.
        crop_rounding: how an odd margin is split: "round" like torchvision (open_clip) or
            "floor" like transformers' image processors.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    crop: bool = True
    resize_size: int | None = None
    crop_rounding: str = "round"

    def __post_init__(self) -> None:
        # Libraries hand over lists; store tuples so the config stays hashable and frozen.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not isinstance(self.size, int) or self.size <= 0:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        if self.resize_size is not None and self.resize_size < self.size:
            raise ValueError(f"resize_size must be >= size {self.size}, got {self.resize_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be 3 values, std > 0, got {self.mean} / {self.std}")
        _check_choice("interpolation", self.interpolation, _INTERPOLATIONS)
        _check_choice("resize_mode", self.resize_mode, _RESIZE_MODES)
        _check_choice("crop_rounding", self.crop_rounding, _CROP_ROUNDINGS)

    @property
    def resize_target(self) -> int:
        """The shortest-side target of the resize step."""
        return self.resize_size or self.size


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class ModelRef:
    """A parsed, validated model name.

    Attributes:
        kind: "clip", "dinov2" or "default".
        name: the canonical user-facing name ("ViT-B/32", "ViT-B-32:laion2b_s34b_b79k", "small").
        arch: the library's architecture id: an open_clip model name, a Hugging Face hub id, or
            the default encoder's name.
        tag: the open_clip pretrained tag, if any.
    """

    kind: str
    name: str
    arch: str
    tag: str | None = None


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


DEFAULT_CLIP_MODEL = "ViT-B/32"
DEFAULT_DINOV2_SIZE = "large"
DEFAULT_MODEL = "vit-4x768"

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


def parse_model_name(kind: str, model: str | None = None) -> ModelRef:
    """Parse and validate an encoder kind and model name; the only place names are parsed.

    Args:
        kind: "clip", "dinov2" or "default" (case-insensitive).
        model: a model name of that kind, or None for the kind's default. CLIP: OpenAI names
            ("ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"), "tiny", or any open_clip
            name with an optional ":tag" ("ViT-B-32", "ViT-B-32:laion2b_s34b_b79k"). DINOv2:
            "small", "base", "large", "giant" (or "facebook/dinov2-<size>").

    Returns:
        The validated `ModelRef`.

    Raises:
        UnknownEncoderError: for an unknown kind, name or tag; the message lists valid ones.
    """
    kind_key = kind.strip().lower() if isinstance(kind, str) else kind
    if kind_key == "clip":
        return _parse_clip(model or DEFAULT_CLIP_MODEL)
    if kind_key == "dinov2":
        return _parse_dinov2(model or DEFAULT_DINOV2_SIZE)
    if kind_key == "default":
        if model is not None and model.strip().lower() != DEFAULT_MODEL:
            raise UnknownEncoderError(
                f"unknown default-encoder model {model!r}; valid: {DEFAULT_MODEL} (or None)"
            )
        return ModelRef("default", DEFAULT_MODEL, DEFAULT_MODEL)
    raise UnknownEncoderError(f"unknown encoder kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def _parse_clip(name: str) -> ModelRef:
    registered = {m.name.lower(): m for m in CLIP_MODELS}
    known = registered.get(name.strip().lower())
    if known is not None:
        return ModelRef("clip", known.name, known.arch, known.tag)
    arch, sep, tag = name.strip().partition(":")
    open_clip = load_open_clip()
    if "/" in arch or "@" in arch or arch not in open_clip.list_models():
        raise UnknownEncoderError(_unknown_clip_message(name, open_clip.list_models()))
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if sep and tag not in tags:
        raise UnknownEncoderError(
            f"unknown pretrained tag {tag!r} for open_clip model {arch!r}; "
            f"valid tags: {', '.join(tags) or '(none: use weights=PATH or weights=random)'}"
        )
    return ModelRef("clip", name.strip(), arch, tag or None)


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


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder as `list_encoders()` reports it.

    Attributes:
        kind, model: what to pass to `create_encoder`.
        dim: embedding size of `embed()`.
        token_dim: feature size of each token of `encoder(images)`.
        tokens: tokens per image (CLS first) at the default input size.
        preprocess: the preprocessing its weights expect.
        weights: where pretrained weights come from.
        has_text: whether it embeds text (zero-shot tags).
    """

    kind: str
    model: str
    dim: int
    token_dim: int
    tokens: int
    preprocess: PreprocessConfig = field(repr=False)
    weights: str
    has_text: bool


def list_encoders() -> list[EncoderSpec]:
    """Every registered kind/model with its preprocessing, dims and weight source.

    Any other open_clip model name is accepted by `create_encoder("clip", ...)` too; it is not
    listed because its dims are only known once open_clip builds it.

    Returns:
        The specs, CLIP first, then DINOv2, then the default encoder.
    """
    specs = [_clip_spec(m) for m in CLIP_MODELS]
    specs += [_dinov2_spec(s) for s in DINOV2_SIZES]
    cfg = DefaultViTConfig()
    specs.append(
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
    )
    return specs


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
