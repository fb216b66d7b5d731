"""The backend interface: what runs an encoder's image tower, and what it then runs.

A family describes its model once, in torch: the `Encoder._forward` from model input to
(tokens, pooled). A `Backend` decides how that forward runs. The torch backend runs it as it is
(the encoder's own path: on any device and precision, with CUDA graphs or torch.compile); any
other backend turns it into an `ImageRuntime` (`encoders.backends.runtime`; OpenVINO, ONNX Runtime:
`torch.export`, then the library's converter, `encoders.backends.capture`), which the encoder then
feeds with numpy model input (`encoders.backends.frames`); those two can also quantise it to int8
(`encoders.backends.calibration`).
Neither the family nor the pipeline knows which backend runs.

A backend that keeps exports may also have `open(folder, key, compiled) -> ImageRuntime`: the
runtime of an export found sound in the cache by its request (`encoders.backends.locator`),
made without building the torch model (`compiled`: a folder it may keep derived files in).
`create_encoder` uses it where it exists, for a warm start without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from encoders.backends.calibration import Calibration
    from encoders.backends.export_cache import ExportCache
    from encoders.backends.runtime import ImageRuntime
    from encoders.base import Encoder

__all__ = ["Backend"]


class Backend(Protocol):
    """One way to run encoders (`encoders.backends.BACKENDS` lists them).

    Attributes:
        name: what users type (`backend="openvino"`, `--backend openvino`).
    """

    name: str

    def unsupported(
        self, *, device: str | None, precision: str, compile: bool, int8: bool = False
    ) -> str | None:
        """None when this backend can run an encoder so, else why not and what to do instead.

        Args:
            device: the device asked for (None: the backend's default).
            precision: "auto", "fp32", "fp16" or "bf16".
            compile: whether torch.compile is asked for.
            int8: whether the image tower is to be quantised to int8.
        """
        ...

    def placement(self, device: str | None, precision: str) -> tuple[str | None, str]:
        """The device and precision the family builds the torch model with for this backend."""
        ...

    def runtime(
        self,
        encoder: Encoder,
        cache: ExportCache | None,
        int8: Calibration | None = None,
        precision: str = "fp32",
    ) -> ImageRuntime | None:
        """Make `encoder`'s image tower ready to run here.

        Args:
            encoder: the family's encoder, as built with `placement`.
            cache: where exports are kept; None converts in memory every time.
            int8: quantise to int8, calibrated on these frames (None: fp32).
            precision: what the runtime computes in when that is not the built model's own
                ("bf16" on OpenVINO: the fp32 export compiled in bf16); "fp32" otherwise.

        Returns:
            The runtime, or None when the encoder runs its own torch forward.
        """
        ...
