"""Progress for long work: a bar with frames/s and ETA, and the end-of-run summary."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass(slots=True)
class Counters:
    """Live counts of a run, updated by the stages (event loop thread only)."""

    expected: int | None = None
    decoded: int = 0
    analysed: int = 0
    captions: int = 0
    written: int = 0
    loop_lag_max_s: float = 0.0


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Draws `Counters` as one status line.

    On a terminal it rewrites one line a few times a second; elsewhere (logs, CI) it prints a
    plain line every `log_every` seconds so the log stays readable.

    Args:
        counters: what to show.
        stream: where to write (stderr by default).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        counters: Counters,
        stream: TextIO | None = None,
        *,
        log_every: float = 5.0,
        clock=time.monotonic,
    ) -> None:
        self.counters = counters
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every = log_every
        self.clock = clock
        self.started = clock()
        self._last_print = -1e9

    def line(self) -> str:
        c = self.counters
        elapsed = max(1e-9, self.clock() - self.started)
        fps = c.written / elapsed
        if c.expected:
            done = min(1.0, c.written / c.expected)
            width = 24
            bar = "#" * int(done * width) + "-" * (width - int(done * width))
            eta = (c.expected - c.written) / fps if fps > 0 else float("nan")
            eta_text = format_duration(eta) if eta == eta else "?"
            head = f"[{bar}] {done:6.1%} {c.written}/{c.expected} frames"
            tail = f"ETA {eta_text}"
        else:
            head, tail = f"{c.written} frames", ""
        return f"{head}  {fps:6.1f} fps  analysed {c.analysed}  captions {c.captions}  {tail}"

    def update(self, final: bool = False) -> None:
        now = self.clock()
        if not final and not self.tty and now - self._last_print < self.log_every:
            return
        self._last_print = now
        if self.tty:
            self.stream.write("\r" + self.line().ljust(100)[:120] + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
