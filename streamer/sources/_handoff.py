"""Handing frames from a decode thread to the event loop, waiting for room when asked to."""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import threading
from collections.abc import Coroutine

from streamer.core.channel import ChannelClosed

# A waiting decode thread re-checks for a stop this often, so it never outlives a cancelled
# run by more than this.
POLL_S = 0.25


class Handoff(enum.Enum):
    """How a blocking hand-off ended."""

    DONE = "done"
    HALTED = "halted"  # the run is being torn down
    GONE = "gone"  # the consumer closed its channel, or the loop is closed


def put_and_wait(loop: asyncio.AbstractEventLoop, put: Coroutine, halt: threading.Event) -> Handoff:
    """Run `put` (e.g. `channel.put(frame)`) on `loop` and wait for it, from a decode thread.

    Waiting is what gives backpressure: a full `BLOCK` channel holds the decoder back.
    """
    try:
        future = asyncio.run_coroutine_threadsafe(put, loop)
    except RuntimeError:  # the loop is closed: the run that started this thread is gone
        put.close()
        return Handoff.GONE
    while True:
        try:
            future.result(timeout=POLL_S)
            return Handoff.DONE
        except concurrent.futures.TimeoutError:
            if halt.is_set():
                future.cancel()
                return Handoff.HALTED
        except (ChannelClosed, concurrent.futures.CancelledError):
            return Handoff.GONE
