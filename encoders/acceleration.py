"""Optional speed-ups of the encoder forward: CUDA graphs and `torch.compile`.

Both are speed-ups, never requirements: each falls back to the plain eager forward, with one
warning, when it cannot be used, so an encoder gives the same embeddings with or without them
(within the rounding of the dtype it runs in).

    >>> encoder = create_encoder("clip", "ViT-B/32", device="cuda")
    >>> encoder.accelerate(Acceleration())             # CUDA graphs on CUDA, nothing on a CPU
    >>> encoder.accelerate(Acceleration(compile=True))  # and torch.compile
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from encoders.cuda_graphs import GRAPH_BATCH_SIZES, Outputs, WeakForward, check_graph_sizes

__all__ = ["Acceleration", "CompiledForward"]

logger = logging.getLogger("encoders")


@dataclass(frozen=True)
class Acceleration:
    """Which speed-ups the encoder forward uses.

    Attributes:
        cuda_graphs: None: on when the encoder runs on CUDA (where they pay at small batches),
            off elsewhere; True: wanted (on a CPU they do nothing, and a warning says so);
            False: off.
        graph_sizes: batch sizes that get a graph, ascending; a batch is padded up to the next
            one, and a batch above the largest runs as several replays.
        compile: run the forward through `torch.compile`. Off by default: compiling takes
            tens of seconds per batch size, and on top of CUDA graphs it was not measured to
            pay yet.
        compile_backend: `torch.compile` backend ("inductor"; "eager" only traces, for checks).
        compile_mode: `torch.compile` mode, e.g. "max-autotune-no-cudagraphs"; None: default.
    """

    cuda_graphs: bool | None = None
    graph_sizes: tuple[int, ...] = GRAPH_BATCH_SIZES
    compile: bool = False
    compile_backend: str = "inductor"
    compile_mode: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "graph_sizes", check_graph_sizes(self.graph_sizes))
        if self.cuda_graphs not in (None, True, False):
            raise ValueError(f"cuda_graphs must be None, True or False, got {self.cuda_graphs!r}")

    def wants_graphs(self, device: torch.device) -> bool:
        """Whether graphs are asked for on `device` (explicitly, or by default on CUDA)."""
        return self.cuda_graphs is True or (self.cuda_graphs is None and device.type == "cuda")


class CompiledForward:
    """`torch.compile(forward)`, falling back to `forward` for good on the first failure.

    Compilation is lazy: it happens at the first call of each new input shape, so a failure
    (no C++ compiler, an unsupported operation, ...) shows up on a real batch. That batch is
    then run eagerly and so is every later one. CUDA out-of-memory is not a compile failure:
    it propagates, so the encoder can split the batch.

    Args:
        forward: pixels -> tuple of tensors. Of a bound method, the function is compiled and
            called with the object, which is held weakly (`WeakForward`): the frames torch
            traces are the method's, as when the bound method itself is compiled.
        backend, mode: passed to `torch.compile`.
        static: compile each batch size for its own shape (`dynamic=False`). Right under CUDA
            graphs, which pad every batch to a few sizes; without them torch decides, and after
            a second batch size it compiles one shape-generic forward, slower per batch (on an
            H200, ViT-B/32 fp16 compiled that way ran slower than eager at every batch).
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], Outputs],
        backend: str,
        mode: str | None,
        *,
        static: bool = False,
    ):
        from encoders.export_lock import EXPORT_LOCK

        self._eager = WeakForward(forward)
        with EXPORT_LOCK:  # during another thread's torch.export, torch.compile is ignored
            self._compiled: Callable[..., Outputs] | None = torch.compile(
                self._eager.function, backend=backend, mode=mode, dynamic=False if static else None
            )
        self._backend = backend

    @property
    def active(self) -> bool:
        """False once compilation failed and the eager forward took over."""
        return self._compiled is not None

    def __call__(self, pixels: torch.Tensor) -> Outputs:
        arguments = self._eager.arguments(pixels)
        if self._compiled is None:
            return self._eager.function(*arguments)
        try:
            return self._compiled(*arguments)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:  # any compile failure: the eager forward is always correct
            self._compiled = None
            logger.warning(
                "torch.compile (backend %s) failed (%s: %s); running the encoder eagerly. "
                "Drop --compile to skip the attempt.",
                self._backend,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
            return self._eager.function(*arguments)
