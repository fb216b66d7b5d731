"""An encoder opened from a cached export: the warm start, without building the torch model.

`create_encoder(..., backend="openvino", export_cache=...)` makes one when the export cache
holds the export for exactly this request (`encoders.backends.locator`). It has the
`Encoder` surface the pipeline uses (`encode`, `embed`, `info`, `preprocess_cfg`, `dim`,
`logit_scale`, `embed_text`), preprocesses frames with numpy (`encoders.backends.frames`)
and runs them on the backend's runtime. Text runs on the export's text tower when the runtime
has one (`has_text_tower`, `run_text`), tokenised with the family's tokenizer (which needs no
weights). CLIP's, for the models that use CLIP's own tokenizer, is `encoders.bpe`, which
imports neither torch nor open_clip: `embed_text_array` then runs without torch, and
`embed_text` imports it only for the tensor it returns. An export without a text tower (one
made before text towers were exported, or by a backend that does not export them) falls back
as before: the first `embed_text` builds the family's torch model once (the streamer's text
cache, keyed by the weights digest, makes that rare: a warm run finds its labels cached).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from encoders.backends.frames import encode_frames
from encoders.errors import EncoderInputError, no_text_tower
from encoders.info import EncoderInfo
from encoders.registry import PreprocessConfig, family, parse_model_name

if TYPE_CHECKING:
    import torch

    from encoders.acceleration import Acceleration
    from encoders.backends.runtime import ImageRuntime
    from encoders.base import Encoder, EncoderOutput

__all__ = ["ExportedEncoder"]

logger = logging.getLogger("encoders")

_TEXT_BATCH = 256  # texts per run of an exported text tower (a vocabulary can be large)


class ExportedEncoder:
    """A family's image tower as exported for a backend, with the family's description.

    Args:
        runtime: the backend's runtime, opened from the export.
        card: what the encoder is, as the built encoder described itself when the export was
            made or loaded: "info" (`EncoderInfo` fields), "preprocess" (`PreprocessConfig`
            fields), "has_text", "logit_scale".
        build: builds the family's torch encoder (for its text tower), when first needed.
    """

    def __init__(
        self, runtime: ImageRuntime, card: dict[str, Any], build: Callable[[], Encoder]
    ) -> None:
        self._runtime = runtime
        self._card = card
        self._preprocess_cfg = PreprocessConfig(**card["preprocess"])
        self._build = build
        self._text_encoder: Encoder | None = None
        self._tokenizer: Callable[[list[str]], Any] | None = None
        self._no_tokenizer = False  # the family has none, or it could not be made
        self._lock = threading.Lock()
        self._turn = threading.Lock()  # one forward at a time: the runtime has one request
        self.kind: str = card["info"]["kind"]
        self.has_text: bool = bool(card["has_text"])

    def encode_arrays(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """(tokens [B, T, token_dim], embeddings [B, dim]) as float32 numpy, in input order
        (images as `Encoder.encode` takes them); calls from several threads take turns."""
        with self._turn:
            return encode_frames(images, self._preprocess_cfg, self._runtime.run)

    def embed_array(self, images: Any) -> np.ndarray:
        """L2-normalised float32 embeddings [B, dim] as numpy (no torch)."""
        return self.encode_arrays(images)[1]

    def encode(self, images: Any) -> EncoderOutput:
        """As `Encoder.encode` (torch tensors on the CPU)."""
        import torch

        from encoders.base import EncoderOutput

        tokens, embeddings = self.encode_arrays(images)
        return EncoderOutput(torch.from_numpy(tokens), torch.from_numpy(embeddings))

    def __call__(self, images: Any) -> torch.Tensor:
        return self.encode(images).tokens

    def embed(self, images: Any) -> torch.Tensor:
        return self.encode(images).embeddings

    def embed_text(self, texts: Sequence[str] | str) -> torch.Tensor:
        """As `ClipEncoder.embed_text` ([len(texts), dim] float32, L2-normalised, on the CPU):
        `embed_text_array` as a torch tensor."""
        import torch

        return torch.from_numpy(self.embed_text_array(texts))

    def embed_text_array(self, texts: Sequence[str] | str) -> np.ndarray:
        """Text embeddings [len(texts), dim], float32 numpy, L2-normalised: the export's text
        tower (neither torch nor open_clip imported where the family's tokenizer needs
        neither), or the family's torch model (built on first use) when the export holds none."""
        if not self.has_text:
            raise no_text_tower(self.kind, self.info.model)
        tokenizer = self._text_tokenizer()
        if tokenizer is None:
            return self.text_encoder().embed_text(texts).float().cpu().numpy()
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(t, str) for t in texts):
            got = sorted({type(t).__name__ for t in texts if not isinstance(t, str)})
            raise EncoderInputError(f"texts must be a list of str, got items of type {got}")
        if not texts:
            return np.empty((0, self.dim), np.float32)
        parts = [
            self._runtime.run_text(np.asarray(tokenizer(texts[i : i + _TEXT_BATCH]), np.int64))
            for i in range(0, len(texts), _TEXT_BATCH)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _text_tokenizer(self) -> Callable[[list[str]], Any] | None:
        """The family's tokenizer when the runtime has the exported text tower (made once);
        None: text runs on the torch model (no exported text tower, or no tokenizer here)."""
        if not getattr(self._runtime, "has_text_tower", False):
            return None
        with self._lock:
            if self._tokenizer is None and not self._no_tokenizer:
                self._runtime.prepare_text()  # its compile beside the vocabulary's read
                make = family(self.kind).tokenizer
                try:
                    ref = parse_model_name(self.kind, self.info.model)
                    self._tokenizer = None if make is None else make(ref)
                except Exception as exc:  # one that needs files not here: text runs on torch
                    logger.warning("no tokenizer for %s %r (%s: %s): text runs on torch",
                                   self.kind, self.info.model, type(exc).__name__, exc)  # fmt: skip
                self._no_tokenizer = self._tokenizer is None
            return self._tokenizer

    def text_encoder(self) -> Encoder:
        """The family's torch encoder (built once, on the CPU in fp32, as the export was)."""
        with self._lock:
            if self._text_encoder is None:
                logger.info("building %s %r on torch for its text tower (labels not cached)",
                            self.kind, self.info.model)  # fmt: skip
                self._text_encoder = self._build()
            return self._text_encoder

    def accelerate(self, acceleration: Acceleration) -> None:
        """torch.compile and CUDA graphs do not apply to an export (a warning when asked)."""
        if acceleration.compile or acceleration.cuda_graphs:
            logger.warning("torch.compile and CUDA graphs do nothing on backend %r",
                           self._runtime.backend)  # fmt: skip

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run the runtime once per batch size on blank input."""
        size = self._preprocess_cfg.size
        for batch in batch_sizes:
            self._runtime.run(np.zeros((batch, 3, size, size), dtype=np.float32))

    @property
    def info(self) -> EncoderInfo:
        """As the built encoder described itself, computing in what this runtime computes in
        (one export serves fp32 and bf16)."""
        info = self._card["info"]
        return EncoderInfo(
            **{**info, "dtype": getattr(self._runtime, "dtype", None) or info["dtype"]}
        )

    @property
    def preprocess_cfg(self) -> PreprocessConfig:
        return self._preprocess_cfg

    @property
    def logit_scale(self) -> float:
        return float(self._card["logit_scale"])

    @property
    def dim(self) -> int:
        return int(self._card["info"]["dim"])

    @property
    def token_dim(self) -> int:
        return int(self._card["info"]["token_dim"])

    @property
    def device(self) -> torch.device:
        """The CPU: where the exporting backends run (`Encoder.device`, for torch callers)."""
        import torch

        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """float32: the model input the export takes (`Encoder.dtype`, for torch callers)."""
        import torch

        return torch.float32

    @property
    def runtime(self) -> ImageRuntime:
        """What runs the image tower."""
        return self._runtime

    def __repr__(self) -> str:
        info = self._card["info"]
        return (f"ExportedEncoder(model={info['model']!r}, dim={info['dim']}, "
                f"backend={self._runtime.backend!r}, detail={self._runtime.detail!r})")  # fmt: skip


def card_of(encoder: Any) -> dict[str, Any]:
    """What an `ExportedEncoder` needs to know of the built `encoder` it stands in for."""
    from dataclasses import asdict

    info = asdict(encoder.info)
    # what the model computes in itself; a runtime that computes in another dtype says so
    info["dtype"] = str(encoder.dtype).removeprefix("torch.")
    return {
        "info": info,
        "preprocess": asdict(encoder.preprocess_cfg),
        "has_text": bool(encoder.has_text),
        "logit_scale": float(getattr(encoder, "logit_scale", 100.0)),
    }
