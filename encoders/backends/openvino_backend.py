"""The OpenVINO backend: the image tower exported once to OpenVINO IR, run on the CPU.

The family's forward, captured with `torch.export` (`encoders.backends.capture`, shared with
ONNX Runtime), is converted by OpenVINO's own converter (`openvino.convert_model`); nothing is
written by hand. The IR is kept in the export cache (`encoders.backends.export_cache`) with its
weights in fp32 (`compress_to_fp16=False`), and compiled with `INFERENCE_PRECISION_HINT=f32`:
OpenVINO's CPU plugin would otherwise run in bf16 on CPUs that have it, which is faster but not
the numbers torch gives. `precision="bf16"` asks for exactly that, on a CPU with bf16
arithmetic (AVX-512 BF16 or AMX: OpenVINO lists "BF16" among the CPU's capabilities); the
export is the same fp32 IR, only compiled with the bf16 hint. On a CPU without it OpenVINO
would quietly compute in fp32, so it is refused there with the fix.

int8 (`int8=Calibration(...)`): the fp32 IR (from the cache, or exported first) quantised by
NNCF's post-training quantisation on the calibration frames (`encoders.backends.calibration`),
and kept beside it in the cache.

A family with a text tower (CLIP) has it exported beside the image tower, in the same folder
(`text.xml`, `text.bin`: token ids [B, context_length] → L2-normalised embeddings [B, dim];
CLIP's takes ids of any length up to the context length, cut after the last end-of-text token),
and compiled in fp32 when first used (`OpenVinoRuntime.run_text`), so a run opened from the
export embeds text without building the torch model. An export made before the text tower was
exported has none; its encoder builds the torch model for text as it did then.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encoders.backends.runtime import LazyTextTower, OnFirstUse, TextSide
from encoders.extras import install_hint

if TYPE_CHECKING:
    import numpy as np
    import openvino as ov

    from encoders.backends.calibration import Calibration
    from encoders.backends.export_cache import ExportCache, ExportKey
    from encoders.base import Encoder

__all__ = [
    "OpenVinoBackend",
    "OpenVinoRuntime",
    "compile_config",
    "export_image_tower",
    "export_text_tower",
]

logger = logging.getLogger("encoders")

_IR = "image.xml"  # and image.bin beside it
_TEXT_IR = "text.xml"  # the text tower, for families with one (text.bin beside it)
_TEXT_FILES = (_TEXT_IR, "text.bin")
_WEIGHTLESS = "weightless"  # the compiled models' folder, in the one the cache gives
#: fp32 as torch computes it; LATENCY: the threads on one batch at a time (the encoder thread
#: runs one batch after another). The thread count is torch's, the hint bf16 when asked
#: (`compile_config`).
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


class OpenVinoBackend:
    """The image tower on OpenVINO's CPU plugin: fp32, bf16 (on a CPU with it) or int8.
    Installed with the `cpu` extra (`encoders.extras.install_hint("cpu")`)."""

    name = "openvino"

    def unsupported(
        self, *, device: str | None, precision: str, compile: bool, int8: bool = False
    ) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return (
                "backend 'openvino' needs the openvino package, which is not installed: "
                f"{install_hint('cpu', 'openvino')}, or use backend 'torch'"
            )
        from encoders.backends.checks import exported_unsupported

        # the export itself is fp32 (bf16 is how it is compiled): the rest as the others
        other = exported_unsupported(self.name, device=device,
                                     precision="fp32", compile=compile, int8=int8)  # fmt: skip
        if other is not None or precision in ("auto", "fp32"):
            return other
        if precision != "bf16":
            return (
                "backend 'openvino' computes in fp32, in bf16 (on a CPU with AVX-512 BF16 or "
                f"AMX) or in int8 (--int8), not {precision!r}: use precision 'fp32' (or 'auto'), "
                "or backend 'torch'"
            )
        if not cpu_has_bf16():
            return (
                "precision 'bf16' on backend 'openvino' needs a CPU with bf16 arithmetic "
                "(AVX-512 BF16 or AMX), and this one has none (OpenVINO would compute in fp32 "
                "anyway): use precision 'fp32' (or 'auto'), or --int8 for speed here"
            )
        return None

    def placement(self, device: str | None, precision: str) -> tuple[str | None, str]:
        return "cpu", "fp32"  # the torch model it exports from, and the text tower

    def runtime(
        self,
        encoder: Encoder,
        cache: ExportCache | None,
        int8: Calibration | None = None,
        precision: str = "fp32",
    ) -> OpenVinoRuntime:
        import openvino as ov

        core = ov.Core()
        config = compile_config(precision)
        name = f"{encoder.kind} {encoder.info.model!r}"
        what = (f"{name} int8" if int8 else name) + _in(precision)
        if cache is None:
            logger.info("converting %s to OpenVINO in memory (no export cache: every run)", what)
            model = export_image_tower(encoder)
            if int8 is not None:
                model = _quantized(model, int8, encoder)
            compiled = core.compile_model(model, "CPU", config)
            detail = (
                f"OpenVINO {ov.__version__}{_in(precision, int8 is not None)}, converted in memory"
            )
            return OpenVinoRuntime(compiled, detail, dtype=_dtype(precision, int8 is not None))

        def build_fp32(folder: Path) -> None:
            logger.info("exporting %s to OpenVINO (once: later runs load %s)",
                        name, cache.folder(fp32))  # fmt: skip
            _save(export_image_tower(encoder), folder, cache, fp32)
            _save_text(encoder, folder, cache, fp32)

        def build_int8(folder: Path) -> None:
            source = cache.load_or_build(fp32, build_fp32, lambda f: core.read_model(f / _IR))
            logger.info("quantising %s to int8 on %s (once: later runs load %s)", name,
                        int8.path, cache.folder(key))  # fmt: skip
            _save(_quantized(source, int8, encoder), folder, cache, key)
            if not reuse_text_tower(encoder, cache.folder(fp32), folder, _TEXT_FILES):
                _save_text(encoder, folder, cache, key)  # fp32: int8 is for frames

        def load(folder: Path) -> ov.CompiledModel:
            require_text_tower(encoder, key, folder, _TEXT_IR)
            return core.compile_model(core.read_model(folder / _IR), "CPU", config)

        from encoders.backends.capture import require_text_tower, reuse_text_tower

        fp32 = export_key(encoder)
        key = fp32 if int8 is None else export_key(encoder, int8.variant)
        compiled = cache.load_or_build(key, build_fp32 if int8 is None else build_int8, load)
        logger.info("%s runs on OpenVINO %s (export %s)", what, ov.__version__, cache.folder(key))
        detail = f"OpenVINO {ov.__version__}{_in(precision, key.int8)}, {cache.folder(key)}"
        text = LazyTextTower.at(cache.folder(key) / _TEXT_IR, _text_request(core, compile_config()))
        return OpenVinoRuntime(compiled, detail, key, dtype=_dtype(precision, key.int8), text=text)

    def open(self, folder: Path, key: Any, compiled: Path, precision: str = "fp32",
             lazy_image: bool = False) -> OpenVinoRuntime:  # fmt: skip
        """The runtime of an export found sound in the cache (`encoders.backends.locator`),
        compiled (in `precision`) without building the torch model (OpenVINO keeps the
        compiled model in `compiled`); any exception means it is unusable. `lazy_image`: the
        image tower is compiled at its first run (a reader that may only embed text)."""
        import openvino as ov

        core = ov.Core()
        # OpenVINO keeps the compiled model (keyed by the model, the settings and the CPU), so
        # a warm start imports it instead of compiling (half the time); a cache it cannot use
        # it ignores and compiles. It keeps it without the weights, which it reads from the
        # export's own .bin when it imports it: 0.7 MB instead of a second copy of them (351
        # MB for ViT-B/32), the same outputs bit for bit, the import as fast (BENCHMARKS.md).
        _drop_full_blobs(compiled)
        core.set_property({"CACHE_DIR": str(compiled / _WEIGHTLESS)})
        image = {**compile_config(precision), "CACHE_MODE": "OPTIMIZE_SIZE"}
        compiled = (OnFirstUse if lazy_image else OnFirstUse.now)(
            lambda: core.compile_model(str(folder / _IR), "CPU", image)
        )
        detail = f"OpenVINO {ov.__version__}{_in(precision, key.int8)}, {folder}"
        config = {**compile_config(), "CACHE_MODE": "OPTIMIZE_SIZE"}
        text = LazyTextTower.at(folder / _TEXT_IR, _text_request(core, config))
        return OpenVinoRuntime(compiled, detail, key, dtype=_dtype(precision, key.int8), text=text)


def _drop_full_blobs(compiled: Path) -> None:
    """Remove compiled models an earlier version kept with their weights, straight in
    `compiled` (this one keeps its own, weightless, in a folder inside): a second copy of
    the weights that nothing reads any more."""
    for blob in compiled.glob("*.blob"):
        with contextlib.suppress(OSError):
            blob.unlink()


def compile_config(precision: str = "fp32") -> dict[str, Any]:
    """How the model is compiled: `COMPILE_CONFIG` with torch's thread count, so one setting
    (`torch.set_num_threads`: a bench's `--threads`, a cluster replica's `--encoder-cpus`)
    sizes both backends alike, and the bf16 hint for `precision="bf16"`. A process without
    torch (a run from a cached export) leaves the count to OpenVINO."""
    config = {
        **COMPILE_CONFIG,
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        config["INFERENCE_NUM_THREADS"] = torch.get_num_threads()
    return config


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 on this CPU ("BF16" among its
    capabilities: AVX-512 BF16 or AMX), asked once."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _in(precision: str, int8: bool = False) -> str:
    """What the log line says the runtime computes in (int8 runs its other ops in `precision`)."""
    if int8:
        return " in int8" + (", the rest in bf16" if precision == "bf16" else "")
    return " in bf16" if precision == "bf16" else ""


def _dtype(precision: str, int8: bool = False) -> str | None:
    """What `EncoderInfo.dtype` says of a runtime compiled in `precision`: "int8" when
    quantised (None: the model's)."""
    if int8:
        return "int8"
    return "bfloat16" if precision == "bf16" else None


def export_key(encoder: Encoder, variant: str = "fp32") -> ExportKey:
    """The export cache key of `encoder`'s image tower on OpenVINO (`capture.export_key`)."""
    import openvino as ov

    from encoders.backends.capture import export_key as key

    return key(encoder, "openvino", ov.__version__, variant)


class OpenVinoRuntime(TextSide):
    """A compiled OpenVINO image tower, run with one reused infer request (one thread), and
    the export's text tower when it has one.

    Args:
        compiled: the compiled model: one input (model input), outputs (tokens, pooled);
            an `OnFirstUse` one is compiled at the first `run`.
        detail: for people: version and origin.
        key: the export cache's key, None when not cached.
        dtype: what it computes in, when not the model's own dtype ("bfloat16").
        text: the export's text tower (compiled when first run); None: not exported.
    """

    backend = "openvino"

    def __init__(
        self,
        compiled: ov.CompiledModel | OnFirstUse[ov.CompiledModel],
        detail: str,
        key: Any = None,
        dtype: str | None = None,
        text: LazyTextTower | None = None,
    ) -> None:
        self._image = image = (
            compiled if isinstance(compiled, OnFirstUse) else OnFirstUse.now(lambda: compiled)
        )
        self.export_key = key  # the cache's key (its weights digest), None when not cached
        self.dtype = dtype
        self._request = OnFirstUse(lambda: image().create_infer_request())
        self.detail = detail
        self._text = text

    @property
    def image_ready(self) -> bool:
        """Whether the image tower is compiled (one opened for a reader is at its first run)."""
        return self._image.made

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # share_inputs: the pixels are read in place; the outputs are copied, since the
        # request's buffers are overwritten by the next batch.
        results = self._request().infer(pixels, share_inputs=True, share_outputs=False)
        return results[0], results[1]


def export_image_tower(encoder: Encoder) -> ov.Model:
    """The family's forward (model input → tokens, pooled) as an OpenVINO model, fp32, with a
    dynamic batch dimension.

    Raises:
        UnsupportedBackendError: the forward cannot be exported (torch.export's reason).
    """
    import openvino as ov

    from encoders.backends.capture import capture_image_tower
    from encoders.export_lock import EXPORT_LOCK

    size = encoder.preprocess_cfg.size
    with EXPORT_LOCK:  # the conversion decomposes the program: torch's global tables
        model = ov.convert_model(capture_image_tower(encoder, "openvino"))
    model.reshape({model.input(0): ov.PartialShape([-1, 3, size, size])})
    return model


def export_text_tower(encoder: Encoder) -> ov.Model:
    """The family's text forward (token ids int64 [B, context_length] → L2-normalised text
    embeddings [B, dim]) as an OpenVINO model, fp32, with a dynamic batch dimension (and a
    dynamic length, 1 to context_length, where `capture_text_tower` made one).

    Raises:
        UnsupportedBackendError: the text forward cannot be exported (torch.export's reason).
    """
    import openvino as ov

    from encoders.backends.capture import capture_text_tower
    from encoders.export_lock import EXPORT_LOCK

    context = int(encoder.module.context_length)
    with EXPORT_LOCK:
        model = ov.convert_model(capture_text_tower(encoder, "openvino"))
    # the converter leaves both dimensions free: the length is bounded, or fixed, as captured
    length = ov.Dimension(1, context) if encoder.text_any_length else ov.Dimension(context)
    model.reshape({model.input(0): ov.PartialShape([ov.Dimension(), length])})
    return model


def _save_text(encoder: Encoder, folder: Path, cache: ExportCache, key: ExportKey) -> None:
    """Export `encoder`'s text tower into `folder` beside the image tower, when it has one
    (`capture.save_text_tower`)."""
    from encoders.backends.capture import save_text_tower

    def save() -> None:
        _save(export_text_tower(encoder), folder, cache, key, _TEXT_IR)

    save_text_tower(encoder, folder, save)


def _text_request(core: ov.Core, config: dict[str, Any]) -> Callable[[Path], Any]:
    """`LazyTextTower`'s loader: the IR compiled (fp32) by `core` (the image tower's, with
    its cache folder) with `config`, as a callable on token ids, and whether it takes ids of
    any length (its length dimension dynamic)."""

    def load(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
        compiled = core.compile_model(str(path), "CPU", config)
        request = compiled.create_infer_request()
        any_length = compiled.input(0).get_partial_shape()[1].is_dynamic
        return lambda ids: request.infer(ids, share_inputs=True, share_outputs=False)[0], any_length

    return load


def _save(
    model: ov.Model, folder: Path, cache: ExportCache, key: ExportKey, name: str = _IR
) -> None:
    """Write `model` as IR `name` into `folder`, after checking that the cache's disk holds it
    (its constants: the weights file)."""
    import openvino as ov

    constants = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    size = sum(op.get_output_element_type(0).size * math.prod(op.get_output_shape(0))
               for op in constants)  # fmt: skip
    cache.check_room(key, size)
    ov.save_model(model, folder / name, compress_to_fp16=False)


def _quantized(model: ov.Model, int8: Calibration, encoder: Encoder) -> ov.Model:
    from encoders.backends.calibration import quantize

    layers = [op.get_friendly_name() for op in model.get_ordered_ops()
              if op.get_type_name() in ("Convolution", "MatMul")]  # fmt: skip
    return quantize(model, int8.pixels(encoder.preprocess_cfg), layers)
