"""Image encoders behind one interface: CLIP (open_clip), DINOv2 (transformers), default.

    >>> import encoders
    >>> enc = encoders.create_encoder("clip", "ViT-B/32")   # pretrained, from the local cache
    >>> enc.embed(frames)                                   # uint8 HxWx3 frames -> [B, 512]
    >>> enc.embed_text(["a person at the door"])            # CLIP only -> [1, 512]
    >>> encoders.create_encoder("clip", "ViT-B/32", backend="openvino",   # the image tower on
    ...                         export_cache="~/.cache/streamer/exports")  # OpenVINO (CPU)
    >>> encoders.open_export("clip", "ViT-B/32",                # that export, opened without
    ...                      export_cache="~/.cache/streamer/exports")  # building; None if none

torch, open_clip and transformers are imported only when an encoder is built (listing the
encoders, parsing names and opening a cached export need none of them).
"""

import importlib
from typing import TYPE_CHECKING, Any

# isort: off
# Each family registers itself in `encoders.registry` when imported; this order is the table's
# (`list_encoders()`, the kinds, `--encoder`). A new family: its module, and a line here. The
# family modules describe their models without torch; their encoders are built (and torch
# imported) by `create_encoder` or when a name below that needs torch is first read.
from encoders.clip import create_clip_encoder
from encoders.dinov2 import create_dinov2_encoder
from encoders.default import create_default_encoder

# isort: on
from encoders.errors import (
    EncoderError,
    EncoderInputError,
    UnknownEncoderError,
    UnsupportedBackendError,
    WeightsUnavailableError,
)
from encoders.factory import create_encoder, open_export
from encoders.info import EncoderInfo
from encoders.registry import EncoderSpec, PreprocessConfig, list_encoders
from encoders.selection import UseCase, encoder_matrix, recommend_encoder

if TYPE_CHECKING:
    from encoders.base import Encoder, EncoderOutput
    from encoders.clip import ClipEncoder
    from encoders.default import DefaultEncoder
    from encoders.dinov2 import Dinov2Encoder

#: names read when first asked for: each one's module imports torch
_LAZY = {
    "ClipEncoder": "encoders.clip",
    "DefaultEncoder": "encoders.default",
    "Dinov2Encoder": "encoders.dinov2",
    "Encoder": "encoders.base",
    "EncoderOutput": "encoders.base",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ClipEncoder",
    "DefaultEncoder",
    "Dinov2Encoder",
    "Encoder",
    "EncoderError",
    "EncoderInfo",
    "EncoderInputError",
    "EncoderOutput",
    "EncoderSpec",
    "PreprocessConfig",
    "UnknownEncoderError",
    "UnsupportedBackendError",
    "UseCase",
    "WeightsUnavailableError",
    "create_clip_encoder",
    "create_default_encoder",
    "create_dinov2_encoder",
    "create_encoder",
    "encoder_matrix",
    "list_encoders",
    "open_export",
    "recommend_encoder",
]
