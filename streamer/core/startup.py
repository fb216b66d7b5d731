"""Where a run's start-up time goes: a small recorder of named phases (`--profile-startup`).

The phases of a start overlap (the model loads on a thread while the sources open and the first
frames decode), so each is recorded as a span, from and to, in seconds since the process
started; the report lists them in the order they began::

    with startup.phase("source open"):
        ...
    startup.mark("first frame analysed")   # an instant: the end of start-up

Recording is always on and costs a clock read per phase; `enable` asks for the report, which
is printed once, when the last phase (`LAST`) is marked. The recorder belongs to the process (the
start of a process is one thing); `Recorder` instances serve tests.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

__all__ = ["LAST", "Recorder", "Span", "enable", "mark", "phase", "process_age", "recorder"]

#: The instant start-up ends: the first frame the encoder analysed.
LAST = "first frame analysed"


def process_age() -> float:
    """Seconds since this process started (from /proc where there is one, which counts the
    interpreter's own start and the imports; else since this module was imported)."""
    try:
        with open("/proc/self/stat") as fh:
            # the fields after the command name, which is in parentheses and may hold spaces
            fields = fh.read().rpartition(")")[2].split()
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, uptime - started)
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


@dataclass(frozen=True, slots=True)
class Span:
    """One phase: its name and when it began and ended, in seconds since the process started
    (an instant has start == end)."""

    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Recorder:
    """The phases of one start-up, thread-safe (the model loads on a worker thread).

    Args:
        clock: seconds since the process started (`process_age`, read once; then a monotonic
            clock counts on from it).
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        if clock is None:
            offset = process_age() - time.perf_counter()
            clock = lambda: time.perf_counter() + offset  # noqa: E731
        self._clock = clock
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self._report: Callable[[Recorder], None] | None = None

    def now(self) -> float:
        """Seconds since the process started."""
        return self._clock()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Record the block as the phase `name` (also when it raises)."""
        start = self._clock()
        try:
            yield
        finally:
            self.add(Span(name, start, self._clock()))

    def mark(self, name: str, since: float | None = None) -> None:
        """Record an instant (or, with `since`, a span ending now); the first of each name
        counts. Marking `LAST` prints the report, when one was asked for."""
        now = self._clock()
        self.add(Span(name, now if since is None else since, now))
        if name == LAST:
            report, self._report = self._report, None
            if report is not None:
                report(self)

    def add(self, span: Span) -> None:
        """Record `span`, unless a phase of that name was recorded already."""
        with self._lock:
            if all(s.name != span.name for s in self._spans):
                self._spans.append(span)

    def spans(self) -> list[Span]:
        """The phases recorded so far, in the order they began."""
        with self._lock:
            return sorted(self._spans, key=lambda s: s.start)

    def enable(self, report: Callable[[Recorder], None] | None = None) -> None:
        """Print the report (or call `report`) once start-up ends (`LAST` is marked)."""
        self._report = report if report is not None else print_report

    def table(self) -> str:
        """The phases as a table: name, from, to, seconds."""
        lines = [f"{'phase':<24} {'from s':>7} {'to s':>7} {'took s':>7}"]
        for s in self.spans():
            lines.append(f"{s.name:<24} {s.start:7.2f} {s.end:7.2f} {s.seconds:7.2f}")
        return "\n".join(lines)


def print_report(recorder: Recorder, stream: TextIO | None = None) -> None:
    """Print the start-up table (phases overlap: the model loads while sources open)."""
    out = stream if stream is not None else sys.stderr
    print("streamer: start-up (seconds since the process started):", file=out)
    for line in recorder.table().splitlines():
        print(f"streamer:   {line}", file=out)


_RECORDER = Recorder()


def recorder() -> Recorder:
    """This process's recorder."""
    return _RECORDER


def phase(name: str) -> contextlib.AbstractContextManager[None]:
    """`Recorder.phase` on this process's recorder."""
    return _RECORDER.phase(name)


def mark(name: str, since: float | None = None) -> None:
    """`Recorder.mark` on this process's recorder."""
    _RECORDER.mark(name, since)


def enable(report: Callable[[Recorder], None] | None = None) -> None:
    """`Recorder.enable` on this process's recorder."""
    _RECORDER.enable(report)
