"""The in-process encoder service started while its model loads: the load (its imports too)
runs on a thread of its own, so the run opens its sources meanwhile, and is abandoned when the
run fails first."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from streamer.analysis.service import LocalEncoderService
from streamer.core.background import lower_priority, start_in_thread
from streamer.core.batcher import BatchPolicy

if TYPE_CHECKING:
    from encoders import Encoder
    from streamer.analysis.worker import EncoderChoice

__all__ = ["abandon", "start_local_encoder_service"]


def start_local_encoder_service(
    choice: EncoderChoice,
    policy: BatchPolicy,
    encoder: Encoder | None = None,
    *,
    background: bool = False,
) -> asyncio.Task[LocalEncoderService]:
    """The in-process service for `choice` (or for `encoder`, already loaded: tests,
    benchmarks), with the encoder's load (its imports too) started now on a thread of its own,
    so the caller opens its sources meanwhile; await the task for the service, or cancel it
    when the run fails first (`abandon`). The task fails with `EncoderError` when the encoder
    cannot be loaded (see `load_encoder`).

    `background=True` is for runs whose streams are all files: the load thread and the
    service's thread lower their priority (`streamer.core.background.lower_priority`), and
    so does every thread they start, the runtimes' own workers included (OpenVINO's are
    started while the model compiles). The decode, overlay and video-encode threads then take
    the cores first and the model runs on what they leave idle; the frames queued between
    them keep the writer fed meanwhile. A live stream's analysis must not wait like that, so
    a run with one keeps the default, and a first run's export (`load_encoder`'s
    `export_in_background`) is made by a child process while its frames start on torch.

    Must be called on the event loop.
    """
    loop = asyncio.get_running_loop()
    abandoned = threading.Event()  # set when the caller gives up waiting: the load stops
    if encoder is not None:
        loading: asyncio.Future[Encoder] = loop.create_future()
        loading.set_result(encoder)
    else:
        loading = start_in_thread(_load_encoder, choice, abandoned, background, name="encoder-load")
    task = loop.create_task(_service_of(loading, policy, background, owned=encoder is None))

    def given_up(done: asyncio.Task[LocalEncoderService]) -> None:
        if done.cancelled():  # (a task cancelled before it ran never awaited `loading`)
            abandoned.set()
            loading.cancel()  # its outcome, LoadAbandoned included, goes nowhere

    task.add_done_callback(given_up)
    return task


def _load_encoder(choice: EncoderChoice, abandoned: threading.Event, background: bool) -> Encoder:
    from encoders.abandon import abandonable
    from streamer.analysis.worker import load_encoder  # torch, where it is needed: here

    if background:  # before the runtime starts its worker threads: they inherit it
        lower_priority()
    with abandonable(abandoned):
        # A live run makes a missing export in a child process while its first frames run on
        # torch (analysed ~10 s sooner on a 2-core CPU); a file run, whose user waits for the
        # whole file, makes it first: the child's own model build and the contention for the
        # cores make a 2-core file run seconds longer (BENCHMARKS.md).
        return load_encoder(choice, export_in_background=not background)


async def _service_of(
    loading: Awaitable[Encoder], policy: BatchPolicy, background: bool, *, owned: bool
) -> LocalEncoderService:
    return LocalEncoderService(await loading, policy, background=background, owned=owned)


def abandon(loading: asyncio.Task[LocalEncoderService] | None) -> None:
    """The run failed before it needed the service it started: stop waiting for its encoder
    (the load's thread stops before its next costly step: `encoders.abandon`), or close the
    service it made."""
    if loading is None:
        return
    if not loading.done():
        loading.cancel()
    elif not loading.cancelled() and loading.exception() is None:
        loading.result().close()
