"""The OpenVINO backend: the image tower exported once to OpenVINO IR, run on the CPU in fp32.

The family's torch forward (`Encoder._forward`, model input → tokens and pooled) is captured
with `torch.export` (batch size dynamic, the input side fixed) and converted by OpenVINO's own
converter (`openvino.convert_model`); nothing is written by hand. The IR is kept in the export
cache (`encoders.backends.export_cache`) with its weights in fp32 (`compress_to_fp16=False`),
and compiled with `INFERENCE_PRECISION_HINT=f32`: OpenVINO's CPU plugin would otherwise run in
bf16 on CPUs that have it, which is faster but not the numbers torch gives.

`torch.export` rather than `convert_model`'s own TorchScript tracing: tracing is deprecated in
torch 2.14, warns on DINOv2 (its shape checks become constants) and converts slower.

Text embeddings (CLIP's text tower) stay on torch: they are computed once per vocabulary and
cached by the streamer (`streamer.analysis.text_cache`).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import openvino as ov

    from encoders.backends.export_cache import ExportCache
    from encoders.base import Encoder

__all__ = ["OpenVinoBackend", "OpenVinoRuntime", "compile_config", "export_image_tower"]

logger = logging.getLogger("encoders")

_IR = "image.xml"  # and image.bin beside it
#: fp32 as torch computes it; LATENCY: the threads on one batch at a time (the encoder thread
#: runs one batch after another). The thread count is torch's (`compile_config`).
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
_MAX_BATCH = 4096  # the exported program's upper bound of the dynamic batch dimension


class OpenVinoBackend:
    """The image tower on OpenVINO's CPU plugin, fp32. Install with `pip install
    "streamer[cpu]"` (or `pip install openvino`)."""

    name = "openvino"

    def unsupported(self, *, device: str | None, precision: str, compile: bool) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return (
                "backend 'openvino' needs the openvino package, which is not installed: "
                "pip install 'streamer[cpu]' (or pip install openvino), or use backend 'torch'"
            )
        if device is not None and str(device).partition(":")[0] != "cpu":
            return (
                f"backend 'openvino' runs on the CPU only, got device {str(device)!r}: use "
                "backend 'torch' on that device, or device 'cpu'"
            )
        if precision not in ("auto", "fp32"):
            return (
                f"backend 'openvino' runs in fp32 only (int8 is not there yet), got precision "
                f"{precision!r}: use precision 'fp32' (or 'auto'), or backend 'torch'"
            )
        if compile:
            return (
                "torch.compile (compile) applies to backend 'torch' only: drop it, or use "
                "backend 'torch'"
            )
        return None

    def placement(self, device: str | None, precision: str) -> tuple[str | None, str]:
        return "cpu", "fp32"  # the torch model it exports from, and the text tower

    def runtime(self, encoder: Encoder, cache: ExportCache | None) -> OpenVinoRuntime:
        import openvino as ov

        core = ov.Core()
        config = compile_config()
        what = f"{encoder.kind} {encoder.info.model!r}"
        if cache is None:
            logger.info("converting %s to OpenVINO in memory (no export cache: every run)", what)
            compiled = core.compile_model(export_image_tower(encoder), "CPU", config)
            return OpenVinoRuntime(compiled, f"OpenVINO {ov.__version__}, converted in memory")

        def build(folder: Path) -> None:
            logger.info("exporting %s to OpenVINO (once: later runs load %s)", what,
                        cache.folder(key))  # fmt: skip
            ov.save_model(export_image_tower(encoder), folder / _IR, compress_to_fp16=False)

        def load(folder: Path) -> ov.CompiledModel:
            return core.compile_model(core.read_model(folder / _IR), "CPU", config)

        key = export_key(encoder)
        compiled = cache.load_or_build(key, build, load)
        logger.info("%s runs on OpenVINO %s (export %s)", what, ov.__version__, cache.folder(key))
        return OpenVinoRuntime(compiled, f"OpenVINO {ov.__version__}, {cache.folder(key)}", key)

    def open(self, folder: Path, key: Any, compiled: Path) -> OpenVinoRuntime:
        """The runtime of an export found sound in the cache (`encoders.backends.locator`),
        compiled without building the torch model (OpenVINO keeps the compiled model in
        `compiled`); any exception means it is unusable."""
        import openvino as ov

        core = ov.Core()
        # OpenVINO keeps the compiled model (keyed by the model, the settings and the CPU), so
        # a warm start imports it instead of compiling (half the time); a cache it cannot use
        # it ignores and compiles.
        core.set_property({"CACHE_DIR": str(compiled)})
        compiled = core.compile_model(str(folder / _IR), "CPU", compile_config())
        return OpenVinoRuntime(compiled, f"OpenVINO {ov.__version__}, {folder}", key)


def compile_config() -> dict[str, Any]:
    """How the model is compiled: `COMPILE_CONFIG` with torch's thread count, so one setting
    (`torch.set_num_threads`: a bench's `--threads`, a cluster replica's `--encoder-cpus`)
    sizes both backends alike. A process without torch (a run from a cached export) leaves
    the count to OpenVINO."""
    torch = sys.modules.get("torch")
    if torch is None:
        return dict(COMPILE_CONFIG)
    return {**COMPILE_CONFIG, "INFERENCE_NUM_THREADS": torch.get_num_threads()}


def export_key(encoder: Encoder) -> Any:
    """The export cache key of `encoder`'s image tower on OpenVINO."""
    import openvino as ov
    import torch

    from encoders.backends.export_cache import ExportKey, code_identity, state_dict_digest

    return ExportKey(
        family=encoder.kind,
        model=encoder.info.model,
        weights=state_dict_digest(encoder.module.state_dict().items()),
        code=code_identity(type(encoder), type(encoder.module)),
        backend="openvino",
        backend_version=ov.__version__,
        exporter=f"torch {torch.__version__}",
        input_size=encoder.preprocess_cfg.size,
    )


class OpenVinoRuntime:
    """A compiled OpenVINO image tower, run with one reused infer request (one thread).

    Args:
        compiled: the compiled model: one input (model input), outputs (tokens, pooled).
        detail: for people: version and origin.
    """

    backend = "openvino"

    def __init__(self, compiled: ov.CompiledModel, detail: str, key: Any = None) -> None:
        self._compiled = compiled
        self.export_key = key  # the cache's key (its weights digest), None when not cached
        self._request = compiled.create_infer_request()
        self.detail = detail

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # share_inputs: the pixels are read in place; the outputs are copied, since the
        # request's buffers are overwritten by the next batch.
        results = self._request.infer(pixels, share_inputs=True, share_outputs=False)
        return results[0], results[1]


def export_image_tower(encoder: Encoder) -> ov.Model:
    """The family's forward (model input → tokens, pooled) as an OpenVINO model, fp32, with a
    dynamic batch dimension.

    Raises:
        UnsupportedBackendError: the forward cannot be exported (torch.export's reason).
    """
    import openvino as ov
    import torch

    from encoders.backends._tower import ImageTower as _ImageTower
    from encoders.errors import UnsupportedBackendError

    size = encoder.preprocess_cfg.size
    example = torch.zeros(2, 3, size, size)  # 2, not 1: torch.export specialises a size of 1
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    with torch.inference_mode(False), torch.no_grad():
        try:
            program = torch.export.export(
                _ImageTower(encoder), (example,), dynamic_shapes=({0: batch},), strict=False
            )
        except Exception as exc:  # torch.export's many error types: all mean "cannot export"
            raise UnsupportedBackendError(
                f"{encoder.kind} {encoder.info.model!r} cannot be exported for backend "
                f"'openvino' ({type(exc).__name__}: {str(exc).splitlines()[0]}); use backend "
                "'torch'"
            ) from exc
    model = ov.convert_model(program)
    model.reshape({model.input(0): ov.PartialShape([-1, 3, size, size])})
    return model


def __getattr__(name: str) -> Any:
    # `_ImageTower` is a torch module: defined in `_tower`, imported when asked for
    if name == "_ImageTower":
        from encoders.backends._tower import ImageTower

        return ImageTower
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
