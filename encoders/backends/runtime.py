"""What a backend hands the encoder to run: an image tower, model input in, (tokens, pooled) out.

It lives apart from the `Backend` interface (`encoders.backends.base`) because the two sit on
either side of `encoders.base.Encoder`: a backend takes an encoder and makes its runtime, and
the encoder then runs on that runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ImageRuntime", "TextRuntime"]


class ImageRuntime(Protocol):
    """An image tower made ready by a backend: model input in, (tokens, pooled) out.

    Attributes:
        backend: the backend's name ("openvino").
        detail: for people: the backend's version and where the model came from.
        dtype: what it computes in when not the built model's dtype ("bfloat16"), else None.
    """

    backend: str
    dtype: str | None
    detail: str

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 Bx3xSxS model input → (tokens [B, T, token_dim], pooled [B, dim]), float32."""
        ...


class TextRuntime(ImageRuntime, Protocol):
    """An exporting backend's runtime, which may also hold the family's text tower (exported
    beside the image tower; `encoders.exported.ExportedEncoder` runs text on it).

    Attributes:
        has_text_tower: whether the export holds the text tower (an export made before text
            towers were exported, or one whose text forward could not be exported, has none).
    """

    has_text_tower: bool

    def run_text(self, tokens: np.ndarray) -> np.ndarray:
        """int64 token ids [B, context_length] → L2-normalised text embeddings [B, dim],
        float32."""
        ...
