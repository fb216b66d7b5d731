"""CUDA out-of-memory handling for `Encoder`: halve the batch, then fall back to the CPU.

A batch that runs out of memory is split in halves, each encoded on its own and the results
concatenated, so the output equals an unsplit run; the size that worked caps later batches. A
single image that still runs out of memory moves the model to the CPU (float32) for good. Both
steps are logged once, with what to change to avoid them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from encoders.preprocess import HostStaging
from encoders.registry import ModelRef

__all__ = ["Batch", "OutOfMemoryHandling", "concat_parts"]

logger = logging.getLogger("encoders")

Batch = tuple[torch.Tensor, ...]


class OutOfMemoryHandling:
    """The out-of-memory part of `Encoder` (a mixin: it works on the encoder's own state).

    It reads and changes `_module`, `_device`, `_dtype`, `_graphs`, `_staging` and
    `_batch_limit`, and names the model by `kind` and `_ref` in its warnings.
    """

    _module: torch.nn.Module
    _device: torch.device
    _dtype: torch.dtype
    _graphs: object | None
    _staging: HostStaging
    _batch_limit: int | None
    _ref: ModelRef
    kind: str

    def _run_oom_safe(self, fn: Callable[..., Batch], inputs: Batch) -> Batch:
        """`fn(*inputs)`, halving the batch on CUDA out-of-memory, then falling back to the CPU.

        Halves are encoded independently and concatenated, so results equal an unsplit run.
        The size that worked caps later batches (`batch_limit`), so each of them does not run
        out of memory again first.
        """
        try:
            return fn(*inputs)
        except torch.cuda.OutOfMemoryError:
            if len(inputs[0]) == 1 and not self._can_fall_back():
                raise
        # Out of the except block: the failed attempt's traceback, and the activations it pins,
        # are released before retrying.
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        size = len(inputs[0])
        if size == 1:
            self._fall_back_to_cpu()
            return self._run_oom_safe(fn, inputs)
        half = size // 2
        self._limit_batches(size - half, size)
        first = self._run_oom_safe(fn, tuple(x[:half] for x in inputs))
        second = self._run_oom_safe(fn, tuple(x[half:] for x in inputs))
        return concat_parts([first, second])

    def _limit_batches(self, limit: int, failed: int) -> None:
        if self._batch_limit is not None and self._batch_limit <= limit:
            return
        self._batch_limit = limit
        logger.warning(
            "CUDA out of memory on a batch of %d with %s %r: splitting it, and running later "
            "batches in pieces of at most %d images; lower --max-batch or free GPU memory to "
            "avoid the split",
            failed,
            self.kind,
            self._ref.name,
            limit,
        )

    def _can_fall_back(self) -> bool:
        return self._device.type != "cpu" or self._dtype != torch.float32

    def _fall_back_to_cpu(self) -> None:
        previous = f"{self._device} ({str(self._dtype).removeprefix('torch.')})"
        self._module.to(device="cpu", dtype=torch.float32)
        self._device, self._dtype = torch.device("cpu"), torch.float32
        # Graphs and the pinned buffers belong to the GPU; a CPU has its own memory limits.
        self._graphs, self._batch_limit = None, None
        self._staging = HostStaging(self._device)
        logger.warning(
            "CUDA out of memory encoding a single image with %s %r on %s: moved the model to "
            "the CPU (float32) and continuing there, much slower; free GPU memory or pick a "
            "smaller model to stay on the GPU",
            self.kind,
            self._ref.name,
            previous,
        )


def concat_parts(parts: list[Batch]) -> Batch:
    """Concatenate the results of consecutive pieces of a batch (on the last piece's device)."""
    if len(parts) == 1:
        return parts[0]
    return tuple(
        torch.cat([p.to(column[-1].device) for p in column]) for column in zip(*parts, strict=True)
    )
