"""The torch backend: the encoder runs its own forward, exactly as it always has."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from encoders.backends.calibration import Calibration
    from encoders.backends.export_cache import ExportCache
    from encoders.backends.runtime import ImageRuntime
    from encoders.base import Encoder

__all__ = ["TorchBackend"]


class TorchBackend:
    """Runs the family's torch module eagerly (or with CUDA graphs / torch.compile), on any
    device and precision torch supports. It needs no export."""

    name = "torch"

    def unsupported(
        self, *, device: str | None, precision: str, compile: bool, int8: bool = False
    ) -> str | None:
        if int8:
            return (
                "int8 (--int8) runs on backend 'openvino' or 'onnxruntime' (quantised by NNCF "
                "on the CPU), not on torch: use backend 'openvino' (or 'auto'), or drop --int8"
            )
        return None

    def placement(self, device: str | None, precision: str) -> tuple[str | None, str]:
        return device, precision

    def runtime(
        self,
        encoder: Encoder,
        cache: ExportCache | None,
        int8: Calibration | None = None,
        precision: str = "fp32",
    ) -> ImageRuntime | None:
        return None
