"""Image encoders behind one interface: CLIP (open_clip), DINOv2 (transformers), default.

    >>> import encoders
    >>> enc = encoders.create_encoder("clip", "ViT-B/32")   # pretrained, from the local cache
    >>> enc.embed(frames)                                   # uint8 HxWx3 frames -> [B, 512]
    >>> enc.embed_text(["a person at the door"])            # CLIP only -> [1, 512]
    >>> encoders.create_encoder("clip", "ViT-B/32", backend="openvino",   # the image tower on
    ...                         export_cache="~/.cache/streamer/exports")  # OpenVINO (CPU)

open_clip and transformers are imported only when a CLIP or DINOv2 encoder is built.
"""

from encoders.base import Encoder, EncoderInfo, EncoderOutput

# isort: off
# Each family registers itself in `encoders.registry` when imported; this order is the table's
# (`list_encoders()`, the kinds, `--encoder`). A new family: its module, and a line here.
from encoders.clip import ClipEncoder, create_clip_encoder
from encoders.dinov2 import Dinov2Encoder, create_dinov2_encoder
from encoders.default import DefaultEncoder, create_default_encoder

# isort: on
from encoders.errors import (
    EncoderError,
    EncoderInputError,
    UnknownEncoderError,
    UnsupportedBackendError,
    WeightsUnavailableError,
)
from encoders.factory import create_encoder
from encoders.registry import EncoderSpec, PreprocessConfig, list_encoders
from encoders.selection import UseCase, encoder_matrix, recommend_encoder

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
    "recommend_encoder",
]
