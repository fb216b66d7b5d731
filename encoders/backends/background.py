"""A first run's export made by a child process while the torch model runs the frames.

Converting CLIP ViT-B/32 for OpenVINO takes ~16 s on a 2-core CPU (both towers captured and
converted), and a first run used to wait for it before its first frame. With
`create_encoder(..., export_in_background=True)` a first run builds the torch model as before,
starts a child process (`python -m encoders.export_child`) that makes the export the
way `create_encoder` always does (the same key, lock and locator: concurrent first runs still
export once), and runs its frames on torch meanwhile. When the child is done the encoder opens
the export as a warm run would (`Backend.open`) and runs its image tower there from its next
batch (`Encoder.run_on`); text stays on torch, which is built. A child that fails costs the
speed-up only: the encoder stays on torch, and a warning gives the child's last lines.

The child runs in a session of its own, so a Ctrl-C at the terminal stops the run and not the
export, at low priority (nice 10), so a live stream's analysis keeps the cores first. A process
that ends while its child still works waits for it at exit and says so (a Ctrl-C then stops
it; the next first run exports again), so that the next run opens the export.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BackgroundExport", "pending_exports", "wait_for_exports"]

logger = logging.getLogger("encoders")

_TAIL = 2000  # characters of a failed child's output in the warning
_PROGRESS_S = 10.0  # how often the wait at exit says it still waits
_running: set[BackgroundExport] = set()
_guard = threading.Lock()


class BackgroundExport:
    """A child process making one export; `ready` runs (on a thread of this object's) when it
    succeeded.

    Args:
        request: `create_encoder`'s keyword arguments for the child (JSON; a calibration
            as its path, its frame count in "calibration_frames").
        what: for people: "openvino export of clip 'ViT-B/32'".
        ready: moves the encoder onto the export; an exception is logged, the encoder stays.
    """

    def __init__(self, request: dict[str, Any], what: str, ready: Callable[[], None]) -> None:
        self.what = what
        self.started = time.monotonic()
        self.succeeded: bool | None = None  # None while the child works
        self._ready = ready
        self._stopped = False
        self._move = True  # False once the process is done with its encoders
        self._done = threading.Event()
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 (the watcher closes it)
        root = str(Path(__file__).resolve().parents[2])  # where `encoders` is imported from
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "encoders.export_child", json.dumps(request)],
            stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": path}, start_new_session=True,
        )  # fmt: skip
        with _guard:
            _running.add(self)
        threading.Thread(target=self._watch, name="export-watch", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the child is done and the encoder moved (or stayed); whether it is."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """End the child now (its unfinished export is removed by the next one made)."""
        self._stopped = True
        self._process.terminate()
        self._process.wait()

    def _watch(self) -> None:
        code = self._process.wait()
        seconds = time.monotonic() - self.started
        try:
            if code != 0 and not self._stopped:
                self._output.seek(0)
                tail = self._output.read().decode(errors="replace")[-_TAIL:].strip()
                logger.warning("the %s made in the background failed (exit %s after %.0f s); "
                               "the encoder stays on torch:\n%s", self.what, code, seconds,
                               tail)  # fmt: skip
            elif code == 0:
                moved = self._move
                if moved:
                    self._ready()
                logger.info("the %s is ready (made in %.0f s in the background): %s", self.what,
                            seconds, "the image tower runs on it from now on" if moved else
                            "later runs open it")  # fmt: skip
            self.succeeded = code == 0
        except Exception as exc:  # the backend's reader raises its own types
            logger.warning("could not open the %s made in the background (%s: %s); the encoder "
                           "stays on torch", self.what, type(exc).__name__, exc)  # fmt: skip
            self.succeeded = False
        finally:
            # The encoder is let go here, not when this thread ends: a daemon thread that frees
            # torch tensors while the interpreter finalises aborts the process.
            self._ready = _nothing
            self._output.close()
            with _guard:
                _running.discard(self)
            self._done.set()


def _nothing() -> None:
    pass


def pending_exports() -> list[BackgroundExport]:
    """The exports this process's children are making now."""
    with _guard:
        return list(_running)


def wait_for_exports() -> None:
    """For a process done with its encoders: wait for the children still exporting, saying
    so, so that the next run opens what they make; a Ctrl-C stops them (the next run makes
    the export again). What they make is no longer opened here. Also called at exit; a
    command line calls it before it ends, while its log still reaches its stderr."""
    jobs = pending_exports()
    for job in jobs:
        job._move = False
    try:
        for job in jobs:
            if job.wait(0):
                continue
            logger.warning("waiting for the %s (process %d) so that the next run starts from "
                           "it; Ctrl-C stops it (the next run makes it again)", job.what,
                           job.pid)  # fmt: skip
            while not job.wait(_PROGRESS_S):
                logger.info("still making the %s (%.0f s so far)", job.what,
                            time.monotonic() - job.started)  # fmt: skip
    except KeyboardInterrupt:
        for job in jobs:
            job.stop()
            job.wait()
        logger.warning("stopped the export made in the background: the next run makes it")


atexit.register(wait_for_exports)
