"""The ONNX Runtime backend: the image tower exported once to ONNX, run on ONNX Runtime's CPU
execution provider.

The family's forward, captured with `torch.export` (`encoders.backends.capture`, shared with
OpenVINO), is converted by torch's own ONNX exporter (`torch.onnx.export` of the program, which
keeps its dynamic batch dimension); nothing is written by hand. The model is kept in the export
cache (`encoders.backends.export_cache`) as one `image.onnx` with its weights inside, and run
with the thread count torch uses (`torch.get_num_threads()`: a bench's `--threads`, a cluster
replica's `--encoder-cpus` size both alike), one batch at a time (`inter_op_num_threads=1`).

int8 (`int8=Calibration(...)`): the fp32 model (from the cache, or exported first) quantised by
NNCF on the calibration frames (`encoders.backends.calibration`): quantize/dequantize pairs that
ONNX Runtime runs as int8 kernels; kept beside the fp32 model in the cache.

The CPU only: the `onnxruntime` package has the CPU provider alone; its CUDA provider comes with
`onnxruntime-gpu` and CUDA and cuDNN libraries of matching versions, which streamer does not
install or check. On CUDA the torch backend runs the encoder (with CUDA graphs).

A family with a text tower (CLIP) has it exported beside the image tower (`text.onnx`: token
ids "tokens" [B, context_length] → L2-normalised "embeddings" [B, dim], or any length up to
it as on OpenVINO; fp32 also beside an int8 image tower), loaded when first run
(`OnnxRuntimeRuntime.run_text`), as on OpenVINO.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encoders.backends.runtime import LazyTextTower, OnFirstUse, TextSide
from encoders.extras import install_hint

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import onnxruntime as ort

    from encoders.backends.calibration import Calibration
    from encoders.backends.export_cache import ExportCache, ExportKey
    from encoders.base import Encoder

__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeRuntime", "export_image_tower", "export_text_tower"]

logger = logging.getLogger("encoders")

_MODEL = "image.onnx"
_DATA = "image.onnx.data"  # the weights of a model too large for one protobuf file
_LARGE = 3 << 29  # 1.5 GiB of weights and more: kept beside the model (the limit is 2 GiB)
_INPUT = "pixels"
_OUTPUTS = ("tokens", "pooled")
_TEXT = "text.onnx"  # the text tower, for families with one
_TEXT_DATA = "text.onnx.data"
_NEEDS = ("onnxruntime", "onnx", "onnxscript")  # run; export (torch's exporter needs the others)


class OnnxRuntimeBackend:
    """The image tower on ONNX Runtime's CPU execution provider, fp32 or int8. Install with
    the `onnx` extra (`encoders.extras.install_hint("onnx")`; int8 also needs nncf)."""

    name = "onnxruntime"

    def unsupported(
        self, *, device: str | None, precision: str, compile: bool, int8: bool = False
    ) -> str | None:
        missing = [name for name in _NEEDS if importlib.util.find_spec(name) is None]
        if missing:
            return (
                f"backend 'onnxruntime' needs {', '.join(missing)}, not installed: "
                f"{install_hint('onnx')}, or use backend 'torch'"
            )
        from encoders.backends.checks import exported_unsupported

        return exported_unsupported(
            self.name, device=device, precision=precision, compile=compile, int8=int8,
            cpu_only=" here (the onnxruntime package's CPU execution provider; its CUDA one "
            "needs onnxruntime-gpu and matching CUDA libraries, which streamer does not set up)",
        )  # fmt: skip

    def placement(self, device: str | None, precision: str) -> tuple[str | None, str]:
        return "cpu", "fp32"  # the torch model it exports from, and the text tower

    def runtime(
        self,
        encoder: Encoder,
        cache: ExportCache | None,
        int8: Calibration | None = None,
        precision: str = "fp32",
    ) -> OnnxRuntimeRuntime:
        import onnx
        import onnxruntime as ort

        name = f"{encoder.kind} {encoder.info.model!r}"
        what = f"{name} int8" if int8 else name
        if cache is None:
            logger.info("converting %s to ONNX in memory (no export cache: every run)", what)
            model = export_image_tower(encoder)
            if int8 is not None:
                model = _quantized(model, int8, encoder)
            detail = f"ONNX Runtime {ort.__version__}, converted in memory"
            return OnnxRuntimeRuntime(_session(model.SerializeToString()), detail,
                                      dtype="int8" if int8 is not None else None)  # fmt: skip

        def build_fp32(folder: Path) -> None:
            logger.info("exporting %s to ONNX (once: later runs load %s)",
                        name, cache.folder(fp32))  # fmt: skip
            _save(export_image_tower(encoder), folder / _MODEL, cache, fp32)
            _save_text(encoder, folder, cache, fp32)

        def build_int8(folder: Path) -> None:
            source = cache.load_or_build(fp32, build_fp32, lambda f: onnx.load(f / _MODEL))
            logger.info("quantising %s to int8 on %s (once: later runs load %s)", name,
                        int8.path, cache.folder(key))  # fmt: skip
            _save(_quantized(source, int8, encoder), folder / _MODEL, cache, key)
            if not reuse_text_tower(encoder, cache.folder(fp32), folder, (_TEXT, _TEXT_DATA)):
                _save_text(encoder, folder, cache, key)  # fp32: int8 is for frames

        def load(folder: Path) -> ort.InferenceSession:
            require_text_tower(encoder, key, folder, _TEXT)
            return _session(str(folder / _MODEL))

        from encoders.backends.capture import require_text_tower, reuse_text_tower

        fp32 = export_key(encoder)
        key = fp32 if int8 is None else export_key(encoder, int8.variant)
        session = cache.load_or_build(key, build_fp32 if int8 is None else build_int8, load)
        logger.info("%s runs on ONNX Runtime %s (export %s)", what, ort.__version__,
                    cache.folder(key))  # fmt: skip
        detail = f"ONNX Runtime {ort.__version__}, {cache.folder(key)}"
        text = LazyTextTower.at(cache.folder(key) / _TEXT, _text_session)
        return OnnxRuntimeRuntime(session, detail, key, "int8" if key.int8 else None, text)

    def open(self, folder: Path, key: Any, compiled: Path, precision: str = "fp32",
             lazy_image: bool = False) -> OnnxRuntimeRuntime:  # fmt: skip
        """The runtime of an export found sound in the cache (`encoders.backends.locator`),
        loaded without building the torch model (`compiled` is unused: ONNX Runtime optimises
        the graph at every load, in well under a second for these models); any exception
        means it is unusable. `lazy_image`: the image tower is loaded at its first run."""
        import onnxruntime as ort

        session = (OnFirstUse if lazy_image else OnFirstUse.now)(
            lambda: _session(str(folder / _MODEL))
        )
        detail = f"ONNX Runtime {ort.__version__}, {folder}"
        text = LazyTextTower.at(folder / _TEXT, _text_session)
        return OnnxRuntimeRuntime(session, detail, key, "int8" if key.int8 else None, text)


def export_key(encoder: Encoder, variant: str = "fp32") -> ExportKey:
    """The export cache key of `encoder`'s image tower on ONNX Runtime (`capture.export_key`)."""
    import onnxruntime as ort

    from encoders.backends.capture import export_key as key

    return key(encoder, "onnxruntime", ort.__version__, variant)


class OnnxRuntimeRuntime(TextSide):
    """An ONNX Runtime session of the image tower, and the export's text tower when it has one.

    Args:
        session: the session: input "pixels", outputs ("tokens", "pooled"); an `OnFirstUse`
            one is loaded at the first `run`.
        detail: for people: version and origin.
        dtype: "int8" for a quantised model; None: the model's own (fp32).
        text: the export's text tower (loaded when first run); None: not exported.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        session: ort.InferenceSession | OnFirstUse[ort.InferenceSession],
        detail: str,
        key: Any = None,
        dtype: str | None = None,
        text: LazyTextTower | None = None,
    ) -> None:
        self._session = (
            session if isinstance(session, OnFirstUse) else OnFirstUse.now(lambda: session)
        )
        self.dtype = dtype
        self.export_key = key  # the cache's key (its weights digest), None when not cached
        self.detail = detail
        self._text = text

    @property
    def image_ready(self) -> bool:
        """Whether the image tower is loaded (one opened for a reader is at its first run)."""
        return self._session.made

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tokens, pooled = self._session().run(_OUTPUTS, {_INPUT: pixels})
        return tokens, pooled


def _text_session(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
    """What runs the exported text tower at `path`, and whether it takes ids of any length
    (a named, symbolic length dimension): `LazyTextTower`'s loader."""
    session = _session(str(path))
    any_length = not isinstance(session.get_inputs()[0].shape[1], int)
    return lambda ids: session.run(["embeddings"], {"tokens": ids})[0], any_length


def export_image_tower(encoder: Encoder) -> onnx.ModelProto:
    """The family's forward (model input → tokens, pooled) as an ONNX model, fp32, with a
    dynamic batch dimension; input "pixels", outputs "tokens" and "pooled".

    Raises:
        UnsupportedBackendError: the forward cannot be captured or converted (the reason).
    """
    from encoders.backends.capture import capture_image_tower

    return _converted(encoder, capture_image_tower, [_INPUT], list(_OUTPUTS))


def export_text_tower(encoder: Encoder) -> onnx.ModelProto:
    """The family's text forward (token ids int64 [B, context_length] → L2-normalised text
    embeddings [B, dim]) as an ONNX model, fp32, with a dynamic batch dimension (and a
    dynamic length where `capture_text_tower` made one); input "tokens", output "embeddings".

    Raises:
        UnsupportedBackendError: the text forward cannot be captured or converted (the reason).
    """
    from encoders.backends.capture import capture_text_tower

    return _converted(encoder, capture_text_tower, ["tokens"], ["embeddings"])


def _save_text(encoder: Encoder, folder: Path, cache: ExportCache, key: ExportKey) -> None:
    """Export `encoder`'s text tower into `folder` beside the image tower, when it has one
    (`capture.save_text_tower`)."""
    from encoders.backends.capture import save_text_tower

    def save() -> None:
        _save(export_text_tower(encoder), folder / _TEXT, cache, key, _TEXT_DATA)

    save_text_tower(encoder, folder, save)


def _converted(
    encoder: Encoder, capture: Any, inputs: list[str], outputs: list[str]
) -> onnx.ModelProto:
    """The program `capture(encoder, "onnxruntime")` gives, converted by torch's exporter."""
    import torch

    from encoders.errors import UnsupportedBackendError
    from encoders.export_lock import EXPORT_LOCK

    with EXPORT_LOCK:  # the exporter decomposes the program: torch's global tables
        program = capture(encoder, "onnxruntime")
        try:
            exported = torch.onnx.export(program, dynamo=True, input_names=inputs,
                                         output_names=outputs, optimize=True,
                                         verbose=False)  # fmt: skip
        except Exception as exc:  # the exporter's many error types: all mean "cannot convert"
            raise UnsupportedBackendError(
                f"{encoder.kind} {encoder.info.model!r} cannot be converted to ONNX "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]}); use backend 'openvino' "
                "or 'torch'"
            ) from exc
    return exported.model_proto


def _save(
    model: onnx.ModelProto, path: Path, cache: ExportCache, key: ExportKey, data: str = _DATA
) -> None:
    """Write `model` to `path` (its weights beside it when large), after checking that the
    cache's disk holds them."""
    import onnx

    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    cache.check_room(key, weights)
    onnx.save(model, path, save_as_external_data=weights >= _LARGE, location=data)


def _session(model: str | bytes) -> ort.InferenceSession:
    """A CPU session with torch's thread count (`openvino_backend.compile_config` says why),
    one batch at a time; a process without torch (a run from a cached export) leaves the
    count to ONNX Runtime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    torch = sys.modules.get("torch")
    if torch is not None:
        options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are about its own graph passes
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _quantized(model: onnx.ModelProto, int8: Calibration, encoder: Encoder) -> onnx.ModelProto:
    from encoders.backends.calibration import quantize

    layers = [node.name for node in model.graph.node if node.op_type in ("Conv", "MatMul", "Gemm")]
    return quantize(model, int8.pixels(encoder.preprocess_cfg), layers, lambda x: {_INPUT: x})
