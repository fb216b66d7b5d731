"""The encoder registry: the table of families, the one model-name parser, the shared configs.

Each family (CLIP, DINOV2, the default encoder) lives in one module that describes itself with a
`Family` record and registers it when imported; `encoders/__init__.py` imports them, and its
import order is the table's order. Everything that lists or chooses encoders reads the table:
`parse_model_name`, `list_encoders`, `create_encoder`, `kinds()` (`KINDS`) and the CLI's
`--encoder` choices. A new family is one module plus its import in `encoders/__init__.py`.

Every name a user can type (`create_encoder(kind, model)`, the CLI's `--encoder/--model`) goes
through `parse_model_name`, which hands it to its family's parser and gets a `ModelRef` back;
the rest of a family only ever sees a `ModelRef`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from encoders.errors import UnknownEncoderError

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "CreateEncoder",
    "EncoderSpec",
    "Family",
    "ModelRef",
    "PreprocessConfig",
    "check_model_name",
    "families",
    "family",
    "kinds",
    "list_encoders",
    "parse_model_name",
    "register_family",
    "unregister_family",
]

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
        kind: a registered kind: "clip", "dinov2", "default"…
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


class CreateEncoder(Protocol):
    """A family's factory: a parsed name, a device, weights and precision → an encoder (an
    `encoders.base.Encoder`; not named here, since `encoders.base` imports this module)."""

    def __call__(
        self, ref: ModelRef, device: str | torch.device | None, *, weights: str, precision: str
    ) -> Any: ...


@dataclass(frozen=True)
class Family:
    """One encoder family, as its module registers it.

    Attributes:
        kind: what users type as the encoder kind ("clip"), lower case.
        default_model: the model name used when none is given.
        parse: a model name (never empty) → its `ModelRef`; raises `UnknownEncoderError`
            naming the valid names.
        specs: the family's registered models, for `list_encoders()`.
        create: builds an encoder from a parsed name (`CreateEncoder`).
        has_text: its encoders embed text (zero-shot tags, alert queries).
        backends: the backends that can run its image tower (`encoders.backends`): "torch"
            always; "openvino" when its `_forward` exports with `torch.export` (the
            built-in families' do).
        check: what `parse` leaves to the build, checked on request (`check_model_name`);
            it may import the family's library, which takes seconds. None: `parse` checks
            everything.
        tokenizer: for a family with a text tower, a parsed name → its tokenizer (texts →
            int64 token ids [len(texts), context_length]), made without the weights: what an
            exported text tower takes (`encoders.exported`). None: text needs the torch model.
    """

    kind: str
    default_model: str
    parse: Callable[[str], ModelRef]
    specs: Callable[[], Sequence[EncoderSpec]]
    create: CreateEncoder
    has_text: bool = False
    backends: tuple[str, ...] = ("torch",)
    check: Callable[[ModelRef], None] | None = None
    tokenizer: Callable[[ModelRef], Callable[[list[str]], Any]] | None = None

    def __post_init__(self) -> None:
        if not self.kind or self.kind != self.kind.strip().lower():
            raise ValueError(f"kind must be a non-empty lower-case name, got {self.kind!r}")
        if "torch" not in self.backends:
            raise ValueError(f"a family runs on torch at least, got backends {self.backends}")


_FAMILIES: dict[str, Family] = {}


def register_family(entry: Family) -> Family:
    """Add a family to the table (its module does this when imported).

    Returns:
        `entry`, so a module can keep it: `FAMILY = register_family(Family(...))`.

    Raises:
        ValueError: a family of that kind is registered already.
    """
    if entry.kind in _FAMILIES:
        raise ValueError(f"encoder kind {entry.kind!r} is already registered")
    _FAMILIES[entry.kind] = entry
    return entry


def unregister_family(kind: str) -> None:
    """Remove a family from the table (for tests that register one of their own).

    Raises:
        UnknownEncoderError: no family of that kind is registered.
    """
    family(kind)
    del _FAMILIES[kind.strip().lower()]


def families() -> tuple[Family, ...]:
    """Every registered family, in table order."""
    return tuple(_FAMILIES.values())


def kinds() -> tuple[str, ...]:
    """The registered kinds, in table order: ("clip", "dinov2", "default")."""
    return tuple(_FAMILIES)


def family(kind: str) -> Family:
    """The family registered for `kind` (case-insensitive).

    Raises:
        UnknownEncoderError: for an unknown kind; the message lists the registered ones.
    """
    key = kind.strip().lower() if isinstance(kind, str) else None
    found = _FAMILIES.get(key) if key is not None else None
    if found is None:
        raise UnknownEncoderError(
            f"unknown encoder kind {kind!r}; valid kinds: {', '.join(kinds())}"
        )
    return found


def parse_model_name(kind: str, model: str | None = None) -> ModelRef:
    """Parse and validate an encoder kind and model name; the only place names are parsed.

    Args:
        kind: a registered kind, "clip", "dinov2" or "default" (case-insensitive).
        model: a model name of that kind, or None for the kind's default. CLIP: OpenAI names
            ("ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"), "tiny", or any open_clip
            name with an optional ":tag" ("ViT-B-32", "ViT-B-32:laion2b_s34b_b79k"). DINOv2:
            "small", "base", "large", "giant" (or "facebook/dinov2-<size>").

    Returns:
        The validated `ModelRef`.

    Raises:
        UnknownEncoderError: for an unknown kind or name; the message lists valid ones. An
            open_clip pretrained tag is checked when the model is built (its list needs
            open_clip imported, which a run from a cached export never does).
    """
    entry = family(kind)
    return entry.parse(model or entry.default_model)


def check_model_name(kind: str, model: str | None = None) -> ModelRef:
    """`parse_model_name`, and also what it leaves to the build (an open_clip pretrained tag),
    checked now: for a configuration check, where seconds of imports do not matter.

    Raises:
        UnknownEncoderError: for an unknown kind, name or tag; the message lists valid ones.
    """
    ref = parse_model_name(kind, model)
    check = family(kind).check
    if check is not None:
        check(ref)
    return ref


def list_encoders() -> list[EncoderSpec]:
    """Every registered kind/model with its preprocessing, dims and weight source.

    Any other open_clip model name is accepted by `create_encoder("clip", ...)` too; it is not
    listed because its dims are only known once open_clip builds it.

    Returns:
        The specs, family by family in table order: CLIP, then DINOv2, then the default encoder.
    """
    return [spec for entry in _FAMILIES.values() for spec in entry.specs()]


# Read through `__getattr__`, so not in `__all__`: `KINDS` (the registered kinds, as `kinds()`),
# and the names that lived here before each family moved into its own module.
_MOVED = {
    "CLIP_MODELS": "encoders.clip",
    "ClipModel": "encoders.clip",
    "DEFAULT_CLIP_MODEL": "encoders.clip",
    "DEFAULT_DINOV2_SIZE": "encoders.dinov2",
    "DINOV2_PREPROCESS": "encoders.dinov2",
    "DINOV2_SIZES": "encoders.dinov2",
    "Dinov2Size": "encoders.dinov2",
    "dinov2_size": "encoders.dinov2",
    "DEFAULT_MODEL": "encoders.default",
    "DefaultViTConfig": "encoders.default",
}


def __getattr__(name: str) -> Any:
    if name == "KINDS":  # read when asked, so a family registered later is in it
        return kinds()
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
