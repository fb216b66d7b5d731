"""The torch side of every exporting backend: the towers captured once, and their cache key.

OpenVINO and ONNX Runtime start from the same thing: the family's forward (`Encoder._forward`,
model input → tokens and pooled) captured with `torch.export`, batch size dynamic, the input
side fixed. Each then converts that program with its own library's converter
(`openvino.convert_model`, `torch.onnx.export`); nothing is written by hand. The export cache
key (`export_key`) is built here too, so both backends key their exports alike: they differ
only in the backend's name and version, and the variant ("fp32", or "int8" with its
calibration).

A family with a text tower (CLIP) has its text forward captured the same way
(`capture_text_tower`: token ids → L2-normalised text embeddings), exported beside the image
tower so that a run opened from the export embeds text without building the torch model.

`torch.export` rather than TorchScript tracing: tracing is deprecated in torch 2.14, warns on
DINOv2 (its shape checks become constants) and converts slower.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from encoders.abandon import check_abandoned
from encoders.export_lock import EXPORT_LOCK

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from encoders.backends.export_cache import ExportKey
    from encoders.base import Encoder

__all__ = [
    "MAX_BATCH",
    "NO_TEXT_TOWER",
    "capture_image_tower",
    "capture_text_tower",
    "export_key",
    "require_text_tower",
    "reuse_text_tower",
    "save_text_tower",
]

logger = logging.getLogger("encoders")

MAX_BATCH = 4096  # the captured program's upper bound of the dynamic batch dimension
#: in an export whose family has a text tower that could not be exported: why (text runs on
#: torch), so that the export is not made again for want of it (`require_text_tower`)
NO_TEXT_TOWER = "no-text-tower.txt"


def export_key(encoder: Encoder, backend: str, backend_version: str, variant: str = "fp32"
               ) -> ExportKey:  # fmt: skip
    """The export cache key of `encoder`'s image tower on `backend`.

    Args:
        encoder: the family's encoder (its torch module gives the weights' digest).
        backend: the backend's name ("openvino", "onnxruntime").
        backend_version: its library's version.
        variant: "fp32", or the int8 variant's text (`Calibration.variant`).
    """
    import torch

    from encoders.backends import _tower
    from encoders.backends.export_cache import ExportKey, code_identity, state_dict_digest

    # what computes the forward, and what captures and converts it: an edit to any of them
    # makes the exports made before it stale
    code = (type(encoder), type(encoder.module), sys.modules[__name__], _tower,
            importlib.import_module(f"encoders.backends.{backend}_backend"))  # fmt: skip
    return ExportKey(
        family=encoder.kind,
        model=encoder.info.model,
        weights=state_dict_digest(encoder.module.state_dict().items()),
        code=code_identity(*code),
        backend=backend,
        backend_version=backend_version,
        exporter=f"torch {torch.__version__}",
        input_size=encoder.preprocess_cfg.size,
        variant=variant,
    )


def require_text_tower(encoder: Encoder, key: ExportKey, folder: Path, name: str) -> None:
    """Refuse an fp32 export of a family with a text tower that holds none (`name` missing):
    it was made before text towers were exported, and its key (the weights, the family's
    code) does not say so. Refused while loading, the export cache exports it again, once,
    with its text tower; the model is built then anyway. An int8 export is kept (quantising
    again takes minutes): an encoder opened from it builds the torch model for text.

    Raises:
        FileNotFoundError: naming the missing file and why the export is made again.
    """
    if not encoder.has_text or key.int8 or (folder / NO_TEXT_TOWER).is_file():
        return
    if not (folder / name).is_file():
        raise FileNotFoundError(
            f"it has no {name}: made before text towers were exported, it is exported again "
            "with its text tower"
        )


def save_text_tower(encoder: Encoder, folder: Path, save: Callable[[], None]) -> None:
    """`save()` the text tower into the export `folder` beside the image tower, for a family
    with one. A text forward that cannot be exported costs the text tower only: the image
    tower is kept, and `NO_TEXT_TOWER` says why (its encoder builds the torch model for text).
    """
    from encoders.errors import UnsupportedBackendError

    if not encoder.has_text:
        return
    try:
        save()
    except UnsupportedBackendError as exc:
        logger.warning("%s; its text embeddings run on torch", exc)
        (folder / NO_TEXT_TOWER).write_text(f"{exc}\n")


def reuse_text_tower(encoder: Encoder, source: Path, folder: Path, names: Sequence[str]) -> bool:
    """Give an int8 export (`folder`) the text tower of the fp32 export it was quantised from
    (`source`): the same fp32 files (int8 is for frames), hard-linked where the disk allows,
    else copied, instead of a second capture and conversion (seconds). A `NO_TEXT_TOWER` note
    comes along in their place.

    Args:
        names: the text tower's files, its model first (the others come along where they
            are: ONNX keeps large weights beside the model).

    Returns:
        Whether `folder` now holds what `source` holds of a text tower; False: `source` holds
        neither the model `names[0]` nor the note (export it then, `save_text_tower`).
    """
    if not encoder.has_text:
        return True
    present = [name for name in (*names, NO_TEXT_TOWER) if (source / name).is_file()]
    if names[0] not in present and NO_TEXT_TOWER not in present:
        return False
    for name in present:
        try:
            os.link(source / name, folder / name)
        except OSError:  # another file system, or one without hard links
            shutil.copy2(source / name, folder / name)
    return True


def capture_image_tower(encoder: Encoder, backend: str) -> torch.export.ExportedProgram:
    """The family's forward (model input → tokens, pooled) as a `torch.export` program, fp32,
    with a dynamic batch dimension.

    Args:
        encoder: the family's encoder, on the CPU in fp32.
        backend: the backend it is captured for, named in the error.

    Raises:
        UnsupportedBackendError: the forward cannot be exported (torch.export's reason).
    """
    import torch

    from encoders.backends._tower import ImageTower

    size = encoder.preprocess_cfg.size
    example = torch.zeros(2, 3, size, size)  # 2, not 1: torch.export specialises a size of 1
    return _capture(ImageTower(encoder), example, encoder, backend, "")


def capture_text_tower(encoder: Encoder, backend: str) -> torch.export.ExportedProgram:
    """The family's text forward (token ids int64 [B, context_length] → L2-normalised text
    embeddings [B, dim], float32: `embed_text` after its tokenizer) as a `torch.export`
    program with a dynamic batch dimension, and a dynamic length (2 to context_length) where
    the encoder reads ids cut after the last end-of-text token (`TextTower.any_length`).

    Args:
        encoder: the family's encoder with a text tower, on the CPU in fp32.
        backend: the backend it is captured for, named in the error.

    Raises:
        UnsupportedBackendError: the text forward cannot be exported (torch.export's reason).
    """
    import torch

    from encoders.backends._tower import TextTower

    tower = TextTower(encoder)
    # 2, not 1 (torch.export specialises a size of 1); ids that are not all equal, so the
    # end-of-text position (the largest id, where CLIP pools) is traced as data, not a constant
    example = torch.arange(2 * tower.context_length, dtype=torch.int64)
    example = example.reshape(2, tower.context_length) % 1000
    # the ids' length dynamic too where the tower reads ids cut after the last end-of-text
    length = torch.export.Dim("length", min=2, max=tower.context_length)
    lengths = {1: length} if tower.any_length else {}
    return _capture(tower, example, encoder, backend, "the text tower of ", lengths)


def _capture(
    tower: torch.nn.Module,
    example: torch.Tensor,
    encoder: Encoder,
    backend: str,
    what: str,
    dynamic: dict[int, Any] | None = None,
) -> torch.export.ExportedProgram:
    """`torch.export` of `tower` on `example`, its first dimension dynamic (1 to MAX_BATCH),
    and those of `dynamic` (dimension → `torch.export.Dim`)."""
    import torch

    from encoders.errors import UnsupportedBackendError

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    shapes = ({0: batch, **(dynamic or {})},)
    with EXPORT_LOCK, torch.inference_mode(False), torch.no_grad():
        check_abandoned()  # also after waiting for another thread's export
        try:
            return torch.export.export(tower, (example,), dynamic_shapes=shapes, strict=False)
        except Exception as exc:  # torch.export's many error types: all mean "cannot export"
            raise UnsupportedBackendError(
                f"{what}{encoder.kind} {encoder.info.model!r} cannot be exported for "
                f"backend {backend!r} ({type(exc).__name__}: {str(exc).splitlines()[0]}); use "
                "backend 'torch'"
            ) from exc
