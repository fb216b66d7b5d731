"""The `Encoder` base class: input handling, inference mode, OOM splitting and fallback, info.

A family subclass (CLIP, DINOv2, default) only implements `_forward(pixels) -> (tokens,
pooled)`; everything between the caller's frames and that call lives here: staging the frames
in reusable (pinned) host buffers, preprocessing on the device, the optional speed-ups
(`encoders.acceleration`: CUDA graphs, torch.compile), and the out-of-memory handling (its
own module, `encoders._oom`). That is the torch backend; another backend (`encoders.backends`)
exports `_forward` and is handed to the encoder with `run_on`, after which frames go through
numpy preprocessing to it instead (`encoders.backends.frames`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from encoders._oom import Batch, OutOfMemoryHandling, concat_parts
from encoders.acceleration import Acceleration, CompiledForward
from encoders.backends.frames import encode_frames
from encoders.backends.runtime import ImageRuntime
from encoders.cuda_graphs import GraphRunner, bucket_for, cuda_graphs_unsupported
from encoders.errors import UnsupportedBackendError, no_text_tower
from encoders.info import PRECISION_NAMES, RANDOM_WEIGHTS, EncoderInfo, WeightsSource
from encoders.preprocess import FrameGroup, HostStaging, preprocess_frames, split_images
from encoders.registry import ModelRef, PreprocessConfig

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PRECISIONS",
    "RANDOM_WEIGHTS",
    "Encoder",
    "EncoderInfo",
    "EncoderOutput",
    "WeightsSource",
    "resolve_device",
    "resolve_dtype",
    "seeded",
]

logger = logging.getLogger("encoders")

PRECISIONS: dict[str, torch.dtype] = dict(
    zip(PRECISION_NAMES, (torch.float32, torch.float16, torch.bfloat16), strict=True)
)


@dataclass(frozen=True)
class EncoderOutput:
    """One forward pass's results.

    Attributes:
        tokens: [batch, tokens, token_dim] in the model's dtype, CLS first.
        embeddings: [batch, dim] float32, L2-normalised.
    """

    tokens: torch.Tensor
    embeddings: torch.Tensor


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device`, or CUDA when available, else the CPU.

    Raises:
        UnsupportedBackendError: a device torch does not know, or a CUDA device this machine
            does not have (torch's own error is a traceback from its first CUDA call).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UnsupportedBackendError(
            f"device {device!r} is not one torch knows: give 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    count = torch.cuda.device_count() if chosen.type == "cuda" else 0
    if chosen.type == "cuda" and (count == 0 or (chosen.index or 0) >= count):
        none = "no CUDA device (no NVIDIA GPU or driver, or a CPU-only torch)"
        have = f"{count} CUDA device(s)" if count else none
        raise UnsupportedBackendError(
            f"device {device!r}: torch sees {have} here: leave the device unset (CUDA when "
            "there is one, else the CPU) or give 'cpu'"
        )
    return chosen


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The model dtype for a precision name: "auto" is fp16 on CUDA and fp32 elsewhere.

    Raises:
        ValueError: for an unknown precision name.
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        valid = ", ".join(["auto", *PRECISIONS])
        raise ValueError(f"precision must be one of {valid}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        logger.warning("precision fp16 on the CPU: torch has few fp16 kernels there, so the "
                       "encoder runs several times slower than in fp32 (ViT-B/32: 4x); use "
                       "fp32, or bf16 on a CPU with AVX-512 BF16 or AMX")  # fmt: skip
    return PRECISIONS[precision]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with a fixed CPU RNG seed, restoring the caller's RNG state afterwards.

    Random initialisations are seeded so a labelled random-weights run gives the same
    embeddings every time (file mode promises identical output run to run).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Encoder(OutOfMemoryHandling):
    """An image encoder: uint8 frames in, token features and L2-normalised embeddings out.

    Calling conventions (`images` as accepted by `encoders.preprocess.split_images`):
    `encoder(images)` gives tokens [batch, tokens, token_dim] (CLS first), `encoder.embed(images)`
    gives [batch, dim] float32 unit vectors, `encoder.encode(images)` gives both from one
    forward pass. Results are on `encoder.device`.

    The forward runs eagerly until `accelerate()` turns on CUDA graphs or torch.compile. Calls
    from several threads (two runs lent one encoder) take turns: a forward keeps state between
    its steps (the token hook's capture, a backend's one infer request).
    """

    kind: ClassVar[str] = ""
    has_text: ClassVar[bool] = False

    def __init__(
        self,
        module: nn.Module,
        ref: ModelRef,
        preprocess_cfg: PreprocessConfig,
        weights: WeightsSource,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self._module = module.eval().requires_grad_(False).to(device=device, dtype=dtype)
        self._ref = ref
        self._preprocess_cfg = preprocess_cfg
        self._weights = weights
        self._device = device
        self._dtype = dtype
        self._num_params = sum(p.numel() for p in module.parameters())
        self._staging = HostStaging(device)
        self._acceleration = Acceleration(cuda_graphs=False)
        self._graphs: GraphRunner | None = None
        self._compiled: CompiledForward | None = None
        self._batch_limit: int | None = None
        self._runtime: ImageRuntime | None = None
        self._weights_digest: str | None = None  # `note_weights_digest`
        self._turn = threading.RLock()  # one forward at a time (see the class docstring)
        if weights.random:
            logger.warning(
                "%s %r uses random weights (not trained): its embeddings carry no meaning, so "
                "tags and scene scores are noise",
                self.kind,
                ref.name,
            )

    # -- the family's part -------------------------------------------------------------------

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model input Bx3xSxS on the device -> (tokens [B, T, token_dim], pooled [B, dim])."""
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, images: Any) -> EncoderOutput:
        """Tokens and embeddings from one forward pass.

        Args:
            images: a HxWx3 uint8 frame (numpy array or torch tensor), a BxHxWx3 uint8 batch, a
                list of HxWx3 uint8 frames of any sizes (grouped by size, order kept), or an
                already-normalised float tensor Bx3xSxS (S = `preprocess_cfg.size`).

        Returns:
            `EncoderOutput(tokens, embeddings)`, in input order, on `self.device`.

        Raises:
            EncoderInputError: for images in any other form.
        """
        with self._turn:
            if self._runtime is not None:
                tokens, embeddings = encode_frames(images, self._preprocess_cfg, self._runtime.run)
                return EncoderOutput(torch.from_numpy(tokens), torch.from_numpy(embeddings))
            staging = self._staging  # a CPU fallback mid-call swaps it; release what was taken
            try:
                groups, count = split_images(images, self._preprocess_cfg.size, staging)
                results = [self._encode_group(g) for g in groups]
            finally:
                staging.uploaded()
        tokens = _merge([r[0] for r in results], groups, count, self._device)
        pooled = _merge([r[1] for r in results], groups, count, self._device)
        return EncoderOutput(tokens, F.normalize(pooled.float(), dim=-1))

    def __call__(self, images: Any) -> torch.Tensor:
        """Token features [batch, tokens, token_dim], CLS first (see `encode`)."""
        return self.encode(images).tokens

    def embed(self, images: Any) -> torch.Tensor:
        """L2-normalised float32 embeddings [batch, dim] (see `encode`)."""
        return self.encode(images).embeddings

    def embed_array(self, images: Any) -> np.ndarray:
        """`embed` as float32 numpy on the host (what an `ExportedEncoder` gives torch-free)."""
        return self.embed(images).float().cpu().numpy()

    def embed_text_array(self, texts: Sequence[str] | str) -> np.ndarray:
        """`embed_text` as float32 numpy on the host (an `ExportedEncoder` gives it
        torch-free)."""
        return self.embed_text(texts).float().cpu().numpy()

    def embed_text(self, texts: Sequence[str] | str) -> torch.Tensor:
        """Text embeddings, for a family with a text tower (`has_text`); CLIP overrides this.

        Raises:
            UnknownEncoderError: this family embeds images only.
        """
        raise no_text_tower(self.kind, self._ref.name)

    def accelerate(self, acceleration: Acceleration) -> None:
        """Choose the forward's speed-ups (replacing earlier ones); results stay the same.

        CUDA graphs are recorded lazily, per padded batch size, at first use (or by
        `warm_up`); torch.compile compiles at the first batch of each shape. Either one falls
        back to the eager forward, with a warning, if it fails.

        Args:
            acceleration: what to use; `Acceleration()` picks CUDA graphs on CUDA only.
        """
        self._acceleration = acceleration
        if self._runtime is not None:
            if acceleration.compile or acceleration.cuda_graphs:
                logger.warning("torch.compile and CUDA graphs do nothing on backend %r",
                               self._runtime.backend)  # fmt: skip
            return
        reason = cuda_graphs_unsupported(self._device)
        graphs = acceleration.wants_graphs(self._device) and reason is None
        self._compiled = None
        if acceleration.compile:
            # Under graphs every batch is padded to one of a few sizes: compile each statically.
            self._compiled = CompiledForward(
                self._forward,
                acceleration.compile_backend,
                acceleration.compile_mode,
                static=graphs,
            )
        self._graphs = None
        if acceleration.wants_graphs(self._device):
            if graphs:
                self._graphs = GraphRunner(self._forward_once, acceleration.graph_sizes)
            elif acceleration.cuda_graphs:
                logger.warning("cuda_graphs=True (--cuda-graphs) does nothing here: %s", reason)

    @torch.inference_mode()
    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run the forward once per batch size on blank input, before real frames arrive.

        With CUDA graphs this records the graph of each size's bucket; with torch.compile it
        compiles each shape; on any device it settles the allocator and kernel choices, so the
        first real batches are not the slow ones.
        """
        size = self._preprocess_cfg.size
        for batch in batch_sizes:
            pixels = torch.zeros(batch, 3, size, size, device=self._device, dtype=self._dtype)
            if self._runtime is not None:
                self._runtime.run(pixels.numpy())
            else:
                self._run_model(pixels)

    def run_on(self, runtime: ImageRuntime) -> None:
        """Run the image tower on another backend's runtime from now on (text stays on torch).

        `encoders.create_encoder(..., backend=...)` does this; `encode` then preprocesses with
        numpy and calls `runtime.run`, and `accelerate` no longer applies.
        """
        with self._turn:  # between two forwards (a background export moves it mid-run)
            self._runtime = runtime
            self._graphs = self._compiled = None

    def note_weights_digest(self, digest: str) -> None:
        """Give `info.weights_digest` before a runtime's export key does: a first run whose
        export a child process makes keys what it caches (label embeddings) as its later runs,
        opened from that export, look it up."""
        self._weights_digest = digest

    @property
    def runtime(self) -> ImageRuntime | None:
        """What runs the image tower when a backend other than torch does (`run_on`)."""
        return self._runtime

    @property
    def acceleration(self) -> Acceleration:
        """The speed-ups asked for with `accelerate()` (`info.speedups`: what is in use now)."""
        return self._acceleration

    @property
    def batch_limit(self) -> int | None:
        """The largest batch run at once since a CUDA out-of-memory split; None: no limit."""
        return self._batch_limit

    def save(self, path: str | Path) -> Path:
        """Write the weights as a state-dict file that `weights=path` loads back.

        Returns:
            The path written.
        """
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self._module.state_dict(), path)
        return path

    @property
    def info(self) -> EncoderInfo:
        """What this encoder is, where its weights came from and where it runs now."""
        return EncoderInfo(
            kind=self.kind,
            model=self._ref.name,
            dim=self.dim,
            token_dim=self.token_dim,
            num_params=self._num_params,
            image_size=self._preprocess_cfg.size,
            weights=self._weights.description,
            random_weights=self._weights.random,
            device=str(self._device),
            dtype=getattr(self._runtime, "dtype", None) or str(self._dtype).removeprefix("torch."),
            speedups=self._speedups() if self._runtime is None else "none",
            backend=self._runtime.backend if self._runtime is not None else "torch",
            weights_digest=getattr(getattr(self._runtime, "export_key", None), "weights", None)
            or self._weights_digest,
        )

    def _speedups(self) -> str:
        used = []
        if self._compiled is not None and self._compiled.active:
            used.append("compile")
        if self._graphs is not None and self._graphs.enabled:
            used.append("cuda-graphs")
        return "+".join(used) or "eager"

    @property
    def preprocess_cfg(self) -> PreprocessConfig:
        """The preprocessing this model's weights expect (taken from the model's library)."""
        return self._preprocess_cfg

    @property
    def device(self) -> torch.device:
        """Where the model runs now (the CPU after an out-of-memory fallback)."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The model's dtype now."""
        return self._dtype

    @property
    def module(self) -> nn.Module:
        """The underlying torch module (open_clip CLIP, transformers Dinov2Model, ...)."""
        return self._module

    @property
    def dim(self) -> int:
        """Size of `embed()` vectors."""
        raise NotImplementedError

    @property
    def token_dim(self) -> int:
        """Feature size of each token of `encoder(images)`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self._ref.name!r}, dim={self.dim}, "
            f"weights={self._weights.description!r}, device='{self._device}', "
            f"dtype={str(self._dtype).removeprefix('torch.')})"
        )

    # -- the forward: graphs, compiled or eager ------------------------------------------------

    def _forward_once(self, pixels: torch.Tensor) -> Batch:
        """The model forward without graphs: compiled when asked and working, else eager."""
        if self._compiled is not None:
            return self._compiled(pixels)
        return self._forward(pixels)

    def _run_model(self, pixels: torch.Tensor) -> Batch:
        graphs = self._graphs  # only ever set on CUDA (accelerate), dropped on a CPU fallback
        if graphs is not None and graphs.enabled:
            padded = bucket_for(len(pixels), graphs.sizes) or graphs.sizes[-1]
            # Padding past a size that ran out of memory would risk it again: eager instead.
            if self._batch_limit is None or padded <= self._batch_limit:
                return graphs(pixels)
        return self._forward_once(pixels)

    # -- batching: same-size groups, in pieces, preprocessed on the device ----------------------

    def _encode_group(self, group: FrameGroup) -> Batch:
        """One same-size group, in pieces of at most `batch_limit` images."""
        forward = self._group_forward(group)
        limit = self._batch_limit
        if limit is None or len(group.data) <= limit:
            return self._run_oom_safe(forward, (group.data,))
        parts = [
            self._run_oom_safe(forward, (group.data[start : start + limit],))
            for start in range(0, len(group.data), limit)
        ]
        return concat_parts(parts)

    def _group_forward(self, group: FrameGroup) -> Callable[[torch.Tensor], Batch]:
        # Reads self._device/_dtype at call time: after a CPU fallback the remaining halves of
        # the batch are preprocessed and run on the CPU.
        if group.normalised:
            return lambda pixels: self._run_model(pixels.to(self._device, self._dtype))
        return lambda frames: self._run_model(
            preprocess_frames(frames, self._preprocess_cfg, self._device, self._dtype)
        )


def _merge(
    parts: list[torch.Tensor], groups: list[FrameGroup], count: int, device: torch.device
) -> torch.Tensor:
    """Concatenate per-size-group results and put them back in the caller's order."""
    if len(parts) == 1:
        return parts[0].to(device)
    merged = torch.cat([p.to(device) for p in parts])
    order = torch.tensor([i for g in groups for i in g.indices], device=device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(count, device=device)
    return merged[inverse]
