"""The torch modules `torch.export` captures: an encoder's forwards holding its weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from encoders.base import Encoder

__all__ = ["ImageTower", "TextTower"]


class ImageTower(nn.Module):
    """`encoder._forward` as a module holding the encoder's weights, for `torch.export`."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.model = encoder.module  # registered, so its weights are the program's parameters
        self._encoder_forward = encoder._forward

    def forward(self, pixels: Any) -> Any:
        return self._encoder_forward(pixels)


class TextTower(nn.Module):
    """A text encoder's forward from token ids to L2-normalised float32 embeddings (what
    `embed_text` computes after tokenising), holding the model's weights, for `torch.export`.

    Attributes:
        context_length: the token sequence length the model takes (open_clip's).
        any_length: whether it takes ids cut after the last end-of-text token, any length up
            to `context_length` (`ClipEncoder.text_any_length`); else exactly that length.
    """

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.model = encoder.module
        self.context_length = int(self.model.context_length)
        self.any_length = bool(encoder.text_any_length)  # a family with text has both
        self._text_forward = encoder._text_forward

    def forward(self, tokens: Any) -> Any:
        from torch.nn import functional

        return functional.normalize(self._text_forward(tokens).float(), dim=-1)
