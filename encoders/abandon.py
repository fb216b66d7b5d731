"""Stop a model load that nobody waits for any more, before its next costly step.

A run starts its model's load on a thread of its own while it opens its sources
(`streamer.analysis.service`). When the run fails first (a bad input, a cancelled run), nobody
waits for the model, and a thread cannot be killed: left alone it goes on building, exporting
and quantising for seconds to minutes, holding a core and the export lock. The loader runs
under `abandonable(event)`; the costly steps (building the model, capturing it for export,
calibrating int8) call `check_abandoned()` first, which raises `LoadAbandoned` once the event
is set. Outside `abandonable` the check does nothing. A module of its own, importing nothing of
this package, so any step can call it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LoadAbandoned", "abandonable", "check_abandoned"]

_local = threading.local()


class LoadAbandoned(Exception):
    """The caller of this load has gone: it stops here. Nobody awaits it, so nobody sees it."""


@contextmanager
def abandonable(event: threading.Event) -> Iterator[None]:
    """Within the block, this thread's load stops at its next costly step once `event` is
    set (the setter: whoever waited for the load, giving up)."""
    previous = getattr(_local, "event", None)
    _local.event = event
    try:
        yield
    finally:
        _local.event = previous


def check_abandoned() -> None:
    """Raise `LoadAbandoned` when this thread's load has been given up (see `abandonable`).

    Raises:
        LoadAbandoned: the event of the enclosing `abandonable` is set.
    """
    event = getattr(_local, "event", None)
    if event is not None and event.is_set():
        raise LoadAbandoned("the run that asked for this model has ended: its load stops here")
