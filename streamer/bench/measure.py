"""Timing and peak-memory helpers shared by the benchmarks.

Peak memory is measured per benchmark, not per process: on CUDA with the allocator's peak
counter (reset first), on the CPU from the kernel's high-water mark of resident memory, which
Linux lets a process reset (`/proc/self/clear_refs`). Before the CPU baseline is read, memory
freed by earlier benchmarks is handed back to the kernel (`malloc_trim`): otherwise a model
loaded after another one reuses its freed, still resident pages and seems to cost nothing.
Where the high-water mark cannot be reset, the process's peak so far is used and the result
says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the floors never need it
    import torch

__all__ = ["PeakMemory", "Timing", "child_env", "machine_line", "percentiles", "time_runs"]


@dataclass(frozen=True)
class Timing:
    """Seconds per run of one measured call.

    Attributes:
        runs: every timed run, in order.
    """

    runs: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs)

    @property
    def median_ms(self) -> float:
        return self.median_s * 1000.0


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a benchmark's child process: this one's, with the checkout first on
    `PYTHONPATH`, `overrides` on top, and Python's bytecode cache on.

    A `PYTHONDONTWRITEBYTECODE` inherited from the shell would make every child compile
    streamer's modules from source again (about 0.15 s of every start on a 2-core machine),
    a cost no installed copy pays: pip writes the bytecode at install, and an editable
    install's first run writes it. Without it, a bench's untimed warm-up run fills the cache
    like a user's first run.
    """
    root = str(Path(__file__).resolve().parents[2])  # the folder holding `streamer/`
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.update(overrides)
    return env


def time_runs(
    fn: Callable[[], object],
    *,
    seconds: float,
    min_runs: int = 3,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> Timing:
    """Time `fn` for about `seconds` (and at least `min_runs` runs) after `warmup` runs.

    Args:
        fn: the call to time.
        seconds: keep running until this much time has passed...
        min_runs: ...and at least this many runs were timed.
        warmup: untimed runs first (allocator, kernel choice, CUDA graph recording).
        sync: waits for queued device work (`torch.cuda.synchronize`) after each run, so a
            run's time is its work and not just its launch.

    Returns:
        The timings.
    """
    done = sync or (lambda: None)
    for _ in range(warmup):
        fn()
        done()
    runs: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(runs) < min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        done()
        runs.append(time.perf_counter() - start)
    return Timing(tuple(runs))


def percentiles(values: list[float], points: tuple[int, ...] = (50, 95, 99)) -> tuple[float, ...]:
    """Nearest-rank percentiles of `values` (zeros when empty)."""
    if not values:
        return tuple(0.0 for _ in points)
    ordered = sorted(values)
    last = len(ordered) - 1
    return tuple(ordered[min(last, round(p / 100 * last))] for p in points)


class PeakMemory:
    """The peak memory used above a baseline, over a `with` block.

    On CUDA: the allocator's peak (`torch.cuda.max_memory_allocated`) above what was allocated
    when the block started. On the CPU: the resident-set high-water mark (VmHWM) above the
    resident set when the block started.

    Attributes:
        kind: "CUDA max allocated", "RSS peak delta", or "RSS process peak" where the
            high-water mark could not be reset.
        peak_mb: the result, after the block.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = ""
        self.peak_mb = 0.0
        self._base = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.kind = "CUDA max allocated"
        elif _release_free_memory() and _reset_rss_peak():
            self._base = _status_kb("VmRSS") * 1024
            self.kind = "RSS peak delta"
        else:
            self._base = 0
            self.kind = "RSS process peak"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.kind == "RSS peak delta":
            peak = _status_kb("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak_mb = max(0, peak - self._base) / 2**20


def _release_free_memory() -> bool:
    """Collect garbage and return freed heap pages to the kernel (glibc); always True."""
    gc.collect()
    # Not glibc: the baseline may then include freed pages.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return True


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (Linux ≥ 4.0)
    except OSError:
        return False
    return _status_kb("VmHWM") > 0


def _status_kb(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# The CPU features a model's speed depends on, as Linux names them in /proc/cpuinfo's flags.
_CPU_FEATURES = (
    ("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"), ("avx_vnni", "AVX-VNNI"),
    ("avx512_bf16", "bf16"), ("amx_tile", "AMX"),
)  # fmt: skip


def cpu_line(cpuinfo: str | None = None) -> str:
    """The CPU for a benchmark's header: "AMD EPYC, x86_64, 2 cores (AVX2, AVX-512, VNNI,
    bf16)". int8 and bf16 speed turn on VNNI, bf16 and AMX, so a reader sizing a machine needs
    them. `cpuinfo`: /proc/cpuinfo's text (this machine's where None)."""
    from encoders.backends import cpu_info, parse_cpuinfo

    fields = cpu_info() if cpuinfo is None else parse_cpuinfo(cpuinfo)
    model = fields.get("model name") or platform.processor()
    flags = set(fields.get("flags", "").split())
    have = [name for flag, name in _CPU_FEATURES if flag in flags]
    text = f"{model + ', ' if model else ''}{platform.machine()}, {os.cpu_count()} cores"
    return f"{text} ({', '.join(have)})" if have else text


def machine_line(device: torch.device) -> str:
    """The machine, for a benchmark's header: CPU, cores, GPU, software versions."""
    import torch

    cpu = cpu_line()
    gpu = ""
    if device.type == "cuda":
        gpu = f", GPU {torch.cuda.get_device_name(device)}"
    return (
        f"{cpu}{gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.system()} {platform.release()}"
    )
