"""`MomentWriter`: moments go from the event loop to the index without the loop ever waiting.

`put` only appends to a bounded queue under a lock (microseconds). A writer thread takes the
queue in batches, one LanceDB commit each, when `batch_rows` are waiting or the oldest has
waited `flush_s`, and at `close`. The slow work of the indexes (full-text, ANN, optimize) runs
on a second thread, so a long index build never holds up the appends.

Faults, none of which reach the caller of `put`:

- the disk is slow and the queue is full: the oldest waiting moments are dropped, and counted
  (`dropped`); the newest are the ones a search most likely wants;
- a write fails (disk full, I/O error): the writer stops writing, keeps counting what it
  could not write (`lost`), and reports `state="failed"` with the error, which the status
  table, metrics and events show; the streams and the other outputs go on;
- an index build fails: logged and kept in `index_error`; rows are still written, and search
  scans what the index does not cover.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamer.archive.index import IndexPolicy, MomentTable, lance_message
from streamer.archive.moments import Moment
from streamer.errors import ConfigError

__all__ = ["MomentWriter", "WriterPolicy", "WriterStats"]

log = logging.getLogger("streamer.archive")


@dataclass(frozen=True)
class WriterPolicy:
    """How the writer batches.

    Attributes:
        queue_rows: moments that may wait; when full, the oldest waiting one is dropped.
        batch_rows: a batch is written as soon as this many wait.
        flush_s: ... or when the oldest waiting one has waited this long.
        close_timeout_s: how long `close` waits for the last batch before giving up on it.

    Raises:
        ConfigError: a count that is not a whole number, `batch_rows` not in
            1..`queue_rows`, or a time that is not a positive number.
    """

    queue_rows: int = 4096
    batch_rows: int = 256
    flush_s: float = 2.0
    close_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("queue_rows", "batch_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"`{name}` must be a whole number, got {value!r}")
        if self.batch_rows < 1 or self.queue_rows < self.batch_rows:
            raise ConfigError(
                f"need 1 ≤ batch_rows ≤ queue_rows, got batch_rows={self.batch_rows}, "
                f"queue_rows={self.queue_rows}"
            )
        for name in ("flush_s", "close_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"`{name}` must be a number of seconds > 0, got {value!r}")


@dataclass(frozen=True)
class WriterStats:
    """A snapshot of the writer, for the status table, metrics and events.

    Attributes:
        state: "ok" (writing), "failed" (a write failed; no more are tried) or "closed".
        written: moments committed to the index.
        queued: moments waiting to be written.
        dropped: moments dropped because the queue was full (the disk was too slow).
        lost: moments not written because a write failed (the failed batch, and every moment
            put since).
        batches: commits made.
        error: what failed, when `state` is "failed".
        index_error: the last failure to build or refresh an index (rows are still written).
    """

    state: str
    written: int
    queued: int
    dropped: int
    lost: int
    batches: int
    error: str | None
    index_error: str | None


class MomentWriter:
    """Writes moments to a `MomentTable` in batches, on its own thread.

    Args:
        table: the table to write (the caller holds the archive's `WriterLock`).
        policy: batching and queue limits.
        index_policy: when indexes are built and the table optimized.
        clock: monotonic seconds (for the flush deadline).

    Example:
        >>> writer = MomentWriter(table)          # doctest: +SKIP
        >>> writer.put(moment)                    # on the event loop: never waits
        >>> writer.close()                        # writes what is left
    """

    def __init__(
        self,
        table: MomentTable,
        policy: WriterPolicy | None = None,
        index_policy: IndexPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.policy = policy or WriterPolicy()
        self.index_policy = index_policy or IndexPolicy()
        self._clock = clock
        self._queue: collections.deque[tuple[float, Moment]] = collections.deque()
        self._cond = threading.Condition()
        self._state = "ok"
        self._closing = False
        self._flushing = 0
        self._busy = 0  # moments taken from the queue and being written
        self._counts = {"written": 0, "dropped": 0, "lost": 0, "batches": 0}
        self._error: str | None = None
        self._maintainer = _Maintainer(table, self.index_policy)
        # A daemon thread as a safety net: `close` is the way to finish; an interpreter that
        # exits without it must not hang on the disk.
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._thread.start()

    # --- the event loop's side --------------------------------------------------------------

    def put(self, moment: Moment) -> None:
        """Queue a moment; returns at once, whatever the disk does.

        Raises:
            ConfigError: the moment's embedding has the wrong length (another encoder's).
        """
        if moment.embedding.shape != (self.table.dim,):
            raise ConfigError(
                f"embedding must have {self.table.dim} values, got {moment.embedding.shape}"
            )
        with self._cond:
            if self._state != "ok":
                self._counts["lost"] += 1
                return
            if len(self._queue) >= self.policy.queue_rows:
                self._queue.popleft()
                self._counts["dropped"] += 1
            self._queue.append((self._clock(), moment))
            # The first moment arms the flush deadline; a full batch is due at once.
            if len(self._queue) in (1, self.policy.batch_rows):
                self._cond.notify_all()

    def stats(self) -> WriterStats:
        """What the writer has done so far."""
        with self._cond:
            return WriterStats(
                state=self._state,
                queued=len(self._queue),
                error=self._error,
                index_error=self._maintainer.error,
                **self._counts,
            )

    @property
    def state(self) -> str:
        """ "ok", "failed" or "closed"."""
        return self._state

    @property
    def error(self) -> str | None:
        """What failed, when `state` is "failed"."""
        return self._error

    # --- from any thread but the loop: these wait -----------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is queued now, and wait for it. Blocking: not for the event loop.

        Returns:
            True when everything queued is written (or the writer failed: nothing waits
            then), False when `timeout` ran out first.
        """
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: (not self._queue and not self._busy) or self._state != "ok",
                    timeout,
                )
            finally:
                self._flushing -= 1

    def wait_for_indexes(self, timeout: float | None = None) -> bool:
        """Wait until no index work is running or asked for; False when `timeout` ran out."""
        return self._maintainer.wait_idle(timeout)

    def close(self) -> WriterStats:
        """Write what is left, stop the threads (idempotent).

        Waits at most `policy.close_timeout_s` for the writes, then as long again for index
        work that is running; moments still queued then are counted as lost. An index build
        cut short is not committed (the next run makes it).
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(self.policy.close_timeout_s)
        self._maintainer.stop(self.policy.close_timeout_s)
        with self._cond:
            self._counts["lost"] += len(self._queue)
            self._queue.clear()
            if self._state == "ok":
                self._state = "closed"
        return self.stats()

    def __enter__(self) -> MomentWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self.table.add(batch)
            except Exception as exc:  # any failure of the disk: reported, not raised
                self._fail(exc, len(batch))
                return
            with self._cond:
                self._busy = 0
                self._counts["written"] += len(batch)
                self._counts["batches"] += 1
                batches = self._counts["batches"]
                self._cond.notify_all()
            self._maintainer.request(optimize=batches % self.index_policy.optimize_every == 0)

    def _next_batch(self) -> list[Moment] | None:
        """Wait until a batch is due and take it; None when closing with nothing left."""
        policy = self.policy
        with self._cond:
            while True:
                if self._queue and (
                    len(self._queue) >= policy.batch_rows or self._closing or self._flushing
                ):
                    break
                if self._closing:
                    return None
                if self._queue:
                    left = self._queue[0][0] + policy.flush_s - self._clock()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    self._cond.wait()
            count = min(len(self._queue), policy.batch_rows)
            batch = [self._queue.popleft()[1] for _ in range(count)]
            self._busy = count
            return batch

    def _fail(self, exc: Exception, batch_rows: int) -> None:
        message = f"writing the archive's index {self.table.path} failed: {lance_message(exc)}"
        # The disk's failures (OSError, LanceDB's RuntimeError) need no traceback; others do.
        unexpected = not isinstance(exc, OSError | RuntimeError)
        log.error("%s; the archive stops writing moments (the run goes on)", message,
                  exc_info=exc if unexpected else None)  # fmt: skip
        with self._cond:
            self._state = "failed"
            self._error = message
            self._counts["lost"] += batch_rows + len(self._queue)
            self._queue.clear()
            self._busy = 0
            self._cond.notify_all()


class _Maintainer:
    """Index work on its own thread: asked for after each batch, done one at a time.

    A request while work runs is remembered (an optimize asked for is never lost) and done
    next. A daemon thread, since an index build can take minutes and a run that stops must
    not wait for it: a build cut short commits nothing.
    """

    def __init__(self, table: MomentTable, policy: IndexPolicy) -> None:
        self.table = table
        self.policy = policy
        self.error: str | None = None
        self._cond = threading.Condition()
        self._wanted = False
        self._optimize = False
        self._running = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="archive-index", daemon=True)
        self._thread.start()

    def request(self, *, optimize: bool) -> None:
        with self._cond:
            self._wanted = True
            self._optimize = self._optimize or optimize
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not (self._wanted or self._running), timeout)

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._running = False
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._wanted or self._stopping)
                if self._stopping:
                    return
                optimize, self._optimize, self._wanted = self._optimize, False, False
                self._running = True
            self._work(optimize)

    def _work(self, optimize: bool) -> None:
        try:
            done = self.table.maintain(self.policy, optimize=optimize)
        except Exception as exc:  # reported in the writer's stats; the rows are still written
            self.error = lance_message(exc)
            log.warning("archive index maintenance failed: %s", self.error)
            return
        self.error = None
        if done:
            log.info("archive index: %s", ", ".join(done))
