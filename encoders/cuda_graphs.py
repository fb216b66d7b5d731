"""CUDA graphs for the encoder forward: a few fixed batch sizes, a batch padded to the next one.

A ViT forward at small batches is launch-bound on a fast GPU: hundreds of small kernels, each
costing more CPU time to launch than GPU time to run. A CUDA graph records the whole forward
once and replays it with one launch. A graph is fixed to its input shape, so graphs are
recorded for a handful of batch sizes (`GRAPH_BATCH_SIZES`) and a batch is padded up to the
next recorded size; a batch larger than the largest size runs as several full-size replays.

Each graph owns a static input buffer (the batch is copied in) and static outputs (valid until
the next replay, so results are cloned out). Recording happens lazily, the first time a size is
needed, after a few warm-up runs on a side stream (cuBLAS and the caching allocator must not
allocate during capture). If recording fails for any reason the runner says so once and runs
eagerly from then on: a graph is a speed-up, never a requirement. Running out of memory while
recording is the exception: it propagates like any CUDA out-of-memory, so the encoder splits
the batch (and caps later batches), and smaller sizes keep using graphs.

Padding rows are harmless: every image of a ViT batch is computed independently, so the padded
rows' outputs are dropped and the real rows are what an eager run of the batch gives.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "GRAPH_BATCH_SIZES",
    "CapturedGraph",
    "GraphRunner",
    "WeakForward",
    "bucket_for",
    "capture_cuda_graph",
    "check_graph_sizes",
    "cuda_graphs_unsupported",
    "plan_chunks",
]

logger = logging.getLogger("encoders")

GRAPH_BATCH_SIZES: tuple[int, ...] = (1, 4, 16, 64, 256)
WARMUP_RUNS = 3

Outputs = tuple[torch.Tensor, ...]
Forward = Callable[[torch.Tensor], Outputs]


class WeakForward:
    """A forward that does not keep its encoder alive.

    An encoder holds its runner, so a runner holding the encoder's bound method would make a
    cycle: the encoder, its model and their GPU memory would then wait for the garbage
    collector after the last reference goes. This holds the method's function and a weak
    reference to its object instead. A plain function is called as it is.

    Attributes:
        function: what runs: the method's function (called with the object first) or the
            plain function.
    """

    def __init__(self, forward: Forward) -> None:
        if inspect.ismethod(forward):
            self.function: Callable[..., Outputs] = forward.__func__
            self._owner: weakref.ref | None = weakref.ref(forward.__self__)
        else:
            self.function, self._owner = forward, None

    def arguments(self, pixels: torch.Tensor) -> tuple:
        """What `function` is called with for `pixels`.

        Raises:
            ReferenceError: when the method's object is gone.
        """
        if self._owner is None:
            return (pixels,)
        owner = self._owner()
        if owner is None:
            raise ReferenceError("the encoder this forward belongs to was freed")
        return (owner, pixels)

    def __call__(self, pixels: torch.Tensor) -> Outputs:
        return self.function(*self.arguments(pixels))


def check_graph_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    """Validate batch sizes to record: positive ints, strictly ascending.

    Raises:
        ValueError: naming the bad value.
    """
    sizes = tuple(sizes)
    if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"graph batch sizes must be positive ints, got {sizes}")
    if list(sizes) != sorted(set(sizes)):
        raise ValueError(f"graph batch sizes must be strictly ascending, got {sizes}")
    return sizes


def bucket_for(count: int, sizes: Sequence[int]) -> int | None:
    """The smallest recorded size that holds `count` images; None when none does."""
    return next((size for size in sizes if size >= count), None)


def plan_chunks(count: int, sizes: Sequence[int]) -> list[tuple[int, int]]:
    """How a batch of `count` images runs: (images, padded size) per replay, in order.

    Full replays of the largest size first, then the rest padded to its bucket, e.g. with
    sizes (1, 4, 16, 64, 256): 3 -> [(3, 4)]; 300 -> [(256, 256), (44, 64)].
    """
    if count < 1:
        raise ValueError(f"count must be ≥ 1, got {count}")
    largest = sizes[-1]
    plan = [(largest, largest)] * (count // largest)
    rest = count % largest
    if rest:
        plan.append((rest, bucket_for(rest, sizes)))
    return plan


def cuda_graphs_unsupported(device: torch.device) -> str | None:
    """Why CUDA graphs cannot run on `device`, or None when they can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device; the encoder runs on {device}"
    if not torch.cuda.is_available():
        return "CUDA graphs need a CUDA device; torch sees none"
    return None


@dataclass(frozen=True)
class CapturedGraph:
    """One recorded forward: `replay()` recomputes `outputs` from the current `static_input`."""

    static_input: torch.Tensor
    outputs: Outputs
    replay: Callable[[], None]


def capture_cuda_graph(
    forward: Forward, static_input: torch.Tensor, pool: object | None = None
) -> CapturedGraph:
    """Record `forward(static_input)` as a CUDA graph, after warm-up runs on a side stream.

    Args:
        forward: the model forward, pixels -> tuple of tensors.
        static_input: the buffer every replay reads (same device, shape and dtype as later
            batches).
        pool: a memory pool handle shared between the graphs of one runner; they are replayed
            one at a time on one thread, so their intermediate buffers can overlap.

    Returns:
        The graph, its static outputs and its replay function.
    """
    side = torch.cuda.Stream(device=static_input.device)
    side.wait_stream(torch.cuda.current_stream(static_input.device))
    with torch.cuda.stream(side):
        for _ in range(WARMUP_RUNS):
            forward(static_input)
    torch.cuda.current_stream(static_input.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # torch.cuda.graph records on its own side stream and synchronises around the capture.
    # "thread_local": CUDA work of other threads (a decoder, another stream's upload) may go
    # on during the capture; only this thread's calls are recorded.
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        outputs = tuple(forward(static_input))
    return CapturedGraph(static_input, outputs, graph.replay)


Capture = Callable[[Forward, torch.Tensor, object | None], CapturedGraph]


class GraphRunner:
    """Runs a forward through graphs recorded per batch size, eagerly when that fails.

    Args:
        forward: pixels [B, 3, S, S] -> tuple of tensors with the batch first; a bound
            method's object is held weakly (`WeakForward`).
        sizes: the batch sizes to record, ascending.
        capture: how one graph is recorded (`capture_cuda_graph`); it raises when it cannot.

    Attributes:
        enabled: False once a recording failed (everything runs eagerly from then on).
        replays: replays done, for benchmarks and the HUD.
    """

    def __init__(
        self,
        forward: Forward,
        sizes: Sequence[int] = GRAPH_BATCH_SIZES,
        capture: Capture = capture_cuda_graph,
    ) -> None:
        self._forward = WeakForward(forward)
        self.sizes = check_graph_sizes(sizes)
        self._capture = capture
        self._graphs: dict[tuple, CapturedGraph] = {}
        self._pool: object | None = None
        self.enabled = True
        self.replays = 0

    @property
    def captured(self) -> list[int]:
        """The batch sizes recorded so far."""
        return sorted(key[0] for key in self._graphs)

    def __call__(self, pixels: torch.Tensor) -> Outputs:
        """`forward(pixels)`, through the graphs where they work."""
        if not self.enabled:
            return self._forward(pixels)
        parts: list[Outputs] = []
        start = 0
        for count, size in plan_chunks(len(pixels), self.sizes):
            chunk = pixels[start : start + count]
            start += count
            graph = self._graph(size, chunk)
            if graph is None:  # recording failed just now: the rest runs eagerly too
                parts.append(self._forward(pixels[start - count :]))
                break
            graph.static_input[:count].copy_(chunk)
            graph.replay()
            self.replays += 1
            # The static outputs are overwritten by the next replay: hand out copies.
            parts.append(tuple(out[:count].clone() for out in graph.outputs))
        if len(parts) == 1:
            return parts[0]
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))

    def _graph(self, size: int, like: torch.Tensor) -> CapturedGraph | None:
        key = (size, tuple(like.shape[1:]), like.dtype, like.device)
        graph = self._graphs.get(key)
        if graph is not None or not self.enabled:
            return graph
        static_input = torch.zeros((size, *like.shape[1:]), dtype=like.dtype, device=like.device)
        if len(like):
            static_input[:] = like[:1]  # real pixels in every row for the warm-up runs
        try:
            if self._pool is None and like.device.type == "cuda":
                self._pool = torch.cuda.graph_pool_handle()
            graph = self._capture(self._forward, static_input, self._pool)
        except torch.cuda.OutOfMemoryError:
            # Not a graph problem: the caller splits the batch; smaller sizes keep their graphs.
            raise
        except Exception as exc:  # any other failure: the eager forward is always correct
            self.enabled = False
            self._graphs.clear()
            logger.warning(
                "CUDA graph capture failed for a batch of %d (%s: %s); running the encoder "
                "eagerly from now on (slower at small batches). Pass --no-cuda-graphs to skip "
                "the attempt.",
                size,
                type(exc).__name__,
                exc,
            )
            return None
        self._graphs[key] = graph
        logger.debug("recorded a CUDA graph for batches of %d", size)
        return graph
