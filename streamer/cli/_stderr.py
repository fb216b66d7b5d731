"""A stderr that never blocks the command: what is written goes through a bounded queue to a
daemon thread that writes it to file descriptor 2.

A `streamer run` under a service manager or a script may have its stderr on a pipe nobody
reads. Once the pipe is full (64 KiB on Linux) every write to it blocks, and the log lines,
status tables and the signal handler's message are all written from the event loop: the run
would stop moving, SIGTERM included. With this writer a full pipe costs lines instead: past
`QUEUED_WRITES` waiting writes the newest are dropped and counted, and a note says how many
once the pipe takes data again. At the end the command waits at most `DRAIN_S` for what is
queued; the thread, blocked on a pipe nobody reads, is a daemon and does not hold the exit.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["DRAIN_S", "QUEUED_WRITES", "UnblockedStderr", "unblocked_stderr"]

QUEUED_WRITES = 1000  # writes waiting for the descriptor; past it the newest are dropped
DRAIN_S = 1.0  # seconds the command waits at its end for what is queued to be written


class UnblockedStderr(io.TextIOBase):
    """A text stream over descriptor `fd` whose `write` never waits for the descriptor.

    Args:
        fd: where the text goes (2: the process's stderr).
        encoding: how text becomes bytes (the replaced stream's, so the bytes are the same).
        limit: writes that may wait; past it the newest are dropped (`dropped` counts them).
    """

    def __init__(self, fd: int = 2, encoding: str = "utf-8", limit: int = QUEUED_WRITES) -> None:
        super().__init__()
        self._fd = fd
        self._encoding = encoding
        self._queue: queue.Queue[bytes] = queue.Queue(limit)
        self._lock = threading.Lock()
        self.dropped = 0
        self._broken = False  # the reader went away (EPIPE): nothing more is written
        self._thread = threading.Thread(target=self._drain, name="stderr", daemon=True)
        self._thread.start()

    @property
    def encoding(self) -> str:
        return self._encoding

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if text and not self._broken:
            try:
                self._queue.put_nowait(text.encode(self._encoding, "replace"))
            except queue.Full:
                with self._lock:
                    self.dropped += 1
        return len(text)

    def flush(self) -> None:
        """Nothing to wait for: the thread writes as soon as the descriptor takes data."""

    def drain(self, timeout: float = DRAIN_S) -> bool:
        """Wait up to `timeout` seconds for every queued write to reach the descriptor; True
        when they all did."""
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        return done.wait(timeout)

    def _drain(self) -> None:
        while True:
            data = self._queue.get()
            try:
                with self._lock:
                    dropped, self.dropped = self.dropped, 0
                if dropped:
                    data = (f"streamer: {dropped} writes to stderr dropped: nobody read it\n"
                            .encode() + data)  # fmt: skip
                self._write_all(data)
            finally:
                self._queue.task_done()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._broken:
            try:
                view = view[os.write(self._fd, view) :]
            except BrokenPipeError:
                self._broken = True
            except BlockingIOError:  # a descriptor someone made non-blocking: wait a little
                time.sleep(0.05)
            except OSError:
                self._broken = True


@contextlib.contextmanager
def unblocked_stderr() -> Iterator[None]:
    """`sys.stderr` as an `UnblockedStderr` while the block runs, when it is the process's own
    (a test that captures it keeps its capture); at the end, what is queued gets `DRAIN_S`."""
    original = sys.stderr
    if original is None or original is not sys.__stderr__:
        yield
        return
    try:
        fd, encoding = original.fileno(), original.encoding or "utf-8"
    except (AttributeError, OSError, ValueError):  # no descriptor behind it
        yield
        return
    with contextlib.suppress(OSError, ValueError):
        original.flush()
    stream = UnblockedStderr(fd, encoding)
    sys.stderr = stream
    try:
        yield
    finally:
        sys.stderr = original
        stream.drain()
