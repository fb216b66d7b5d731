"""int8: post-training quantisation of an exported image tower, calibrated on real frames.

NNCF (`nncf.quantize`) quantises the fp32 export of either exporting backend (an OpenVINO
model, an ONNX model) from the activations it records on calibration frames: frames of a video
the user names, decoded with PyAV and preprocessed exactly as the encoder's input
(`encoders.backends.frames`). The settings, each measured on CLIP ViT-B/32 (mean pooled cosine
to fp32 on 64 frames of a held-out clip; `tests/encoders/test_equivalence.py`):

- the transformer mode (`ModelType.TRANSFORMER`): softmax, layer norms and GELU stay in float;
  the mixed preset: activations asymmetric (GELU's outputs are mostly positive);
- the first and the last layer that computes (the patch embedding's convolution, the final
  projection) stay in float: 0.966 → 0.991;
- the overflow fix on every layer (7-bit weights): CPUs without VNNI (AVX2 only) sum int8
  products in 16 bits, which saturate with 8-bit weights; with SmoothQuant off as well
  (it scales activations into the weights, which then saturate more): 0.991 → 0.9997.


A `Calibration` names the video and how many frames it takes; its `variant` (the file's name,
size and the digest of its first bytes, and the frame count) goes into the export's cache key,
so an int8 export calibrated on other frames is another export, and the same video finds the
one made before.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from encoders.abandon import check_abandoned
from encoders.errors import CalibrationError, UnsupportedBackendError
from encoders.extras import install_hint

if TYPE_CHECKING:
    from collections.abc import Callable

    from encoders.registry import PreprocessConfig

__all__ = ["DEFAULT_FRAMES", "Calibration", "quantize"]

logger = logging.getLogger("encoders")

M = TypeVar("M")
#: frames a calibration takes by default, spread over the video: NNCF's default is 300; fewer
#: keep a first quantisation of ViT-B/32 under a minute on two cores
DEFAULT_FRAMES = 128
_DIGEST_BYTES = 1 << 26  # the key digests the file's first 64 MiB (and its size): fast, and
# any re-encode or edit of a video changes its first bytes
_SCAN_FRAMES = 2000  # frames decoded at most, looking for a video's calibration frames


@dataclass(frozen=True)
class Calibration:
    """The frames an int8 quantisation is calibrated on.

    Args:
        path: a video file PyAV reads (the first file input of a run, the sample clip, ...).
        frames: how many frames to take, spread over the video's first `_SCAN_FRAMES` frames.

    Example:
        >>> enc = encoders.create_encoder("clip", "ViT-B/32", backend="openvino", int8=True,
        ...                               calibration="street.mp4", export_cache="exports")
    """

    path: Path
    frames: int = DEFAULT_FRAMES

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).expanduser())
        if self.frames < 1:
            raise ValueError(f"frames must be ≥ 1, got {self.frames}")

    @functools.cached_property
    def variant(self) -> str:
        """The export cache key's variant: "int8 NAME SIZE DIGEST xFRAMES".

        Raises:
            CalibrationError: the file cannot be read.
        """
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                digest = hashlib.sha256(fh.read(_DIGEST_BYTES)).hexdigest()[:16]
        except OSError as exc:
            raise self._error(f"{exc.strerror or exc}") from exc
        return f"int8 {self.path.name} {size} {digest} x{self.frames}"

    def check(self) -> None:
        """Fail now, before a model is built and exported, when the video cannot be read.

        Raises:
            CalibrationError: the file is missing or is not a video PyAV opens.
        """
        import av

        if not self.path.is_file():
            raise self._error("no such file")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise self._error("it has no video stream")
        except av.FFmpegError as exc:
            raise self._error(f"PyAV cannot read it: {exc}") from exc

    def pixels(self, cfg: PreprocessConfig) -> list[np.ndarray]:
        """The calibration frames as model input, one float32 1x3xSxS array each.

        Raises:
            CalibrationError: the file is missing, is not a video PyAV decodes, or has no
                frame.
        """
        from encoders.backends.frames import frames_to_pixels

        frames = self._decode()
        logger.info("calibrating int8 on %d frames of %s", len(frames), self.path)
        return [frames_to_pixels(frame[None], cfg) for frame in frames]

    def _decode(self) -> list[np.ndarray]:
        import av

        if not self.path.is_file():
            raise self._error("no such file")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise self._error("it has no video stream")
                stream = container.streams.video[0]
                total = min(stream.frames or _SCAN_FRAMES, _SCAN_FRAMES)
                step = max(1, total // self.frames)
                frames = []
                for index, frame in enumerate(container.decode(stream)):
                    if index % step == 0:
                        frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) == self.frames or index + 1 >= _SCAN_FRAMES:
                        break
        except av.FFmpegError as exc:
            raise self._error(f"PyAV cannot read it: {exc}") from exc
        if not frames:
            raise self._error("it has no frame PyAV decodes")
        return frames

    def _error(self, reason: str) -> CalibrationError:
        return CalibrationError(
            f"cannot calibrate int8 on {str(self.path)!r}: {reason}. Fix: pass a readable "
            "video file to calibrate on (--calibrate PATH; calibration=PATH in Python), or "
            "drop --int8 (int8=False) to run in fp32"
        )


def quantize(
    model: M,
    samples: list[np.ndarray],
    layers: list[str],
    feed: Callable[[np.ndarray], Any] | None = None,
) -> M:
    """`model` (OpenVINO or ONNX, fp32) quantised to int8 by NNCF on `samples`.

    Args:
        model: an `openvino.Model` or an `onnx.ModelProto`.
        samples: model input, one calibration frame each (`Calibration.pixels`).
        layers: the names of the model's computing layers (convolutions, matrix products), in
            the order they run: the first and the last stay in float.
        feed: turns a sample into what the model is called with (ONNX: {input name: array});
            None: the array itself.

    Raises:
        UnsupportedBackendError: nncf is not installed.
    """
    if importlib.util.find_spec("nncf") is None:
        raise UnsupportedBackendError(
            "int8 (--int8) needs the nncf package, which is not installed: "
            f"{install_hint('cpu', 'nncf')}, or drop --int8"
        )
    check_abandoned()  # calibrating takes tens of seconds
    import nncf

    # Its per-step lines go; ours say what is quantised on what. The level of its logger only:
    # `nncf.set_log_level` also sets the level of every handler that logger holds, and under
    # the test suite pytest's capture handlers were among them after a quantisation, and
    # every test after it captured no warning at all.
    logging.getLogger("nncf").setLevel(logging.ERROR)
    # NNCF draws its progress bars (rich) on standard output, where `--jsonl -` writes its
    # records: they go to standard error, with the log, while it calibrates.
    with contextlib.redirect_stdout(sys.stderr):
        return _nncf_quantize(model, nncf.Dataset(samples, feed), len(samples), layers)


def _nncf_quantize(model: M, dataset: Any, size: int, layers: list[str]) -> M:
    """NNCF's post-training quantisation, set for a vision transformer: the first and last
    computing layers in float, overflow fix on, smooth-quant off."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    advanced = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE,
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1),  # -1: off
    )
    return nncf.quantize(
        model,
        dataset,
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=size,
        ignored_scope=nncf.IgnoredScope(names=sorted({layers[0], layers[-1]}) if layers else []),
        advanced_parameters=advanced,
    )
