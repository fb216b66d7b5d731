"""The torch module `torch.export` captures: an encoder's forward holding its weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from encoders.base import Encoder

__all__ = ["ImageTower"]


class ImageTower(nn.Module):
    """`encoder._forward` as a module holding the encoder's weights, for `torch.export`."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.model = encoder.module  # registered, so its weights are the program's parameters
        self._encoder_forward = encoder._forward

    def forward(self, pixels: Any) -> Any:
        return self._encoder_forward(pixels)
