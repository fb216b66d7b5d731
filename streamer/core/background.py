"""Background work that must never take a core from the video: low-priority worker threads.

Encoding a caption's JPEG, building its request body, and (for the web viewer) encoding
preview frames are work the video does not wait for. Done on the default thread pool they
compete as equals with decode and the writers, and on a small machine a frame that arrives
while such work runs waits for a core: that shows up as latency. These threads lower their own
scheduling priority (Linux keeps a nice value per thread), so the kernel runs them only on
what the video threads leave idle. Where per-thread priority is not available they run at
normal priority, which is correct, only less polite.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = [
    "BACKGROUND_NICE",
    "LowPriorityPool",
    "lower_priority",
    "not_waited_for_at_exit",
    "run_in_background",
    "start_in_thread",
    "thread_nice",
    "unfinished_threads",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How much nicer than the process the background threads are (0 normal … 19 lowest).
BACKGROUND_NICE = 10


def lower_priority(step: int = BACKGROUND_NICE) -> None:
    """Raise the calling thread's nice value by `step` (Linux: per thread; threads it starts
    from then on inherit it). Also a thread pool's initializer."""
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + step))
    except (AttributeError, OSError) as exc:  # not Linux/BSD, or not allowed
        log.debug("background thread keeps normal priority: %s", exc)


def thread_nice() -> int | None:
    """The calling thread's nice value, where the platform has one (for tests and logs)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except (AttributeError, OSError):
        return None


class LowPriorityPool:
    """A lazily started pool of `workers` low-priority threads.

    Args:
        name: thread name prefix (shows in py-spy and thread dumps).
        workers: threads; work beyond them queues in order.
        nice: how much lower than the process the threads run.
    """

    def __init__(self, name: str, workers: int = 1, nice: int = BACKGROUND_NICE) -> None:
        self.name = name
        self.workers = workers
        self.nice = nice
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.workers,
                    thread_name_prefix=self.name,
                    initializer=lower_priority,
                    initargs=(self.nice,),
                )
            return self._executor

    async def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run `fn(*args, **kwargs)` on the pool and await its result."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await loop.run_in_executor(self.executor, call)

    def shutdown(self) -> None:
        """Stop the threads after the work already queued (a later `run` starts new ones)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


_shared = LowPriorityPool("background", workers=1)


async def run_in_background(fn: Callable[..., T], *args: object) -> T:
    """Run `fn(*args)` on the process's shared low-priority thread."""
    return await _shared.run(fn, *args)


def start_in_thread(fn: Callable[..., T], *args: object, name: str) -> asyncio.Future[T]:
    """Start `fn(*args)` on a thread of its own now, before the caller's next await, and give
    the future of its result.

    For work the caller overlaps with its own (the model loads while the sources open). The
    thread is a daemon: when the caller fails before awaiting the result, the process exits
    without waiting for work whose result nobody wants. Must be called on the event loop.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # cancelled meanwhile: nobody wants it
            outcome()

    def work() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task, raised there
            error = exc
            _call_soon(loop, settle, lambda: future.set_exception(error))
        else:
            _call_soon(loop, settle, lambda: future.set_result(result))

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    _started.add(thread)
    return future


_started: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def not_waited_for_at_exit() -> None:
    """Count the calling thread among `unfinished_threads` while it lives: the work it may
    still be doing when its caller is done is wanted by nobody (the encoder's thread, in the
    middle of a first run's label embeddings when the run was stopped)."""
    _started.add(threading.current_thread())


def unfinished_threads() -> list[threading.Thread]:
    """The threads of `start_in_thread` (and those `not_waited_for_at_exit` named) still at
    work: once their callers are done, work that nobody wants any more (an abandoned model
    load, still inside torch or OpenVINO)."""
    return [thread for thread in list(_started) if thread.is_alive()]


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits the result
        loop.call_soon_threadsafe(fn, *args)
