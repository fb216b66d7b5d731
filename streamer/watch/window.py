"""The on-screen window (`--show`): the drawn frames of every stream, on this machine's display.

::

    writer threads ──frame()──► newest frame per stream (a dict: no copy, no drawing)
                                        │  taken at most ~30 times a second
                                        ▼
                    display thread (low priority): colour, scale, grid, imshow, waitKey, keys

The writer threads only store a reference, so a slow display (a remote X server, a busy GPU
compositor) costs the pipeline nothing: the display shows the newest frame it has when it is
ready, and frames it had no time for are never shown. HighGUI is not thread-safe and its event
loop lives in `waitKey`, so every HighGUI call happens on that one display thread.

Keys: q or Esc quits (the run stops as with Ctrl-C: outputs are finished), space pauses and
resumes the display (the pipeline goes on), o turns the overlay off and on, h shows the keys.
Closing a window quits too.

HighGUI sits behind a small backend (`GuiBackend`: imshow, wait_key, destroy_window, is_open;
`streamer.watch._gui`), so the display logic runs the same against OpenCV and against an
in-process backend in tests. The project installs `opencv-python-headless`, which has no
HighGUI: `require_gui` says so before any work, with the fix. (On macOS, Cocoa wants HighGUI
on the main thread; this viewer runs it on its own thread, which Linux's GTK and Qt backends
and Windows accept.) What each window shows, a frame per window or a grid of labelled tiles,
is `streamer.watch._layout`'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from typing import Any, Literal

import numpy as np

from streamer.core.background import LowPriorityPool
from streamer.core.events import Observer
from streamer.errors import ConfigError
from streamer.watch._gui import GuiBackend, OpenCvGui, require_gui
from streamer.watch._layout import (
    GRID_WINDOW,
    GridLayout,
    PerStream,
    help_box,
    outlined_text,
)

__all__ = [
    "GRID_WINDOW",
    "GridLayout",
    "GuiBackend",
    "OpenCvGui",
    "WindowViewer",
    "require_gui",
    "show_mode",
]

log = logging.getLogger("streamer.watch.window")

Layout = Literal["auto", "grid"]

MAX_FPS = 30.0  # a display refresh beyond this is work nobody sees
MAX_WINDOWS = 4  # `--show` opens a window per stream up to this many streams, else one grid
CLOSE_TIMEOUT_S = 2.0  # how long stop() waits for the display thread to close its windows
KEY_HELP = (
    "q / Esc  quit (outputs are finished)",
    "space    pause / resume the display",
    "o        overlay off / on",
    "h        this help",
)
_ESC = 27


def show_mode(value: str | bool | None) -> bool | str:
    """`--show`'s value as `RunConfig.show`, after checking a window can be opened.

    Args:
        value: None or False (no window), True or "window" (a window per stream, a grid beyond
            four), "grid" (always one grid).

    Returns:
        False, True or "grid".

    Raises:
        ConfigError: an unknown value, or no GUI here (see `require_gui`).
    """
    if value is None or value is False:
        return False
    if value not in (True, "window", "grid"):
        raise ConfigError(f"--show takes nothing or 'grid', got {value!r}")
    require_gui()
    return "grid" if value == "grid" else True


# ---------------------------------------------------------------------------------------------
# The viewer


class WindowViewer(Observer):
    """Shows every stream's drawn frames in windows on this machine's display.

    Args:
        layout: "auto" (a window per stream up to four streams, one grid beyond) or "grid".
        gui: the HighGUI backend (default: OpenCV's, after `require_gui`).
        max_fps: the most display refreshes a second.

    Raises:
        ConfigError: no GUI here (default backend only), or a bad layout.

    Example:
        >>> await run_pipeline(config, observers=[WindowViewer()])  # or RunConfig(show=True)
    """

    def __init__(
        self, layout: Layout = "auto", gui: GuiBackend | None = None, max_fps: float = MAX_FPS
    ) -> None:
        if layout not in ("auto", "grid"):
            raise ConfigError(f"window layout must be 'auto' or 'grid', got {layout!r}")
        if not max_fps > 0:
            raise ConfigError(f"window max_fps must be > 0, got {max_fps}")
        self.layout = layout
        self.gui: GuiBackend = gui if gui is not None else OpenCvGui()
        self.period = 1.0 / max_fps
        self._fresh: dict[str, np.ndarray] = {}  # newest undisplayed frame per stream
        self._lock = threading.Lock()
        self._paused = False
        self._overlay = True
        self._help = False
        self._ended = threading.Event()  # the display is over (quit, closed, failed, stopped)
        self._closing = threading.Event()  # stop() asks the display thread to finish
        self._pool = LowPriorityPool("window")
        self._display: concurrent.futures.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_run: asyncio.Event | None = None
        self.quit_reason: str | None = None

    @classmethod
    def from_config(cls, show: bool | str) -> WindowViewer:
        """The viewer `RunConfig.show` asks for (True: "auto", "grid": always a grid)."""
        if show not in (True, "grid"):
            raise ConfigError(f"RunConfig.show must be False, True or 'grid', got {show!r}")
        return cls("grid" if show == "grid" else "auto")

    # --- Observer hooks -------------------------------------------------------------------

    @property
    def wants_frames(self) -> bool:
        """Frames are needed while the display runs and is not paused."""
        return self._display is not None and not self._paused and not self._ended.is_set()

    @property
    def wants_raw(self) -> bool:
        """Frames without the overlay once `o` turned it off."""
        return not self._overlay

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def overlay(self) -> bool:
        return self._overlay

    @property
    def running(self) -> bool:
        """Whether the display still runs (False after quit, a closed window or stop)."""
        return self._display is not None and not self._ended.is_set()

    async def start(self, run: Any) -> None:
        """Start the display thread; `run.stop` is what q/Esc and closing a window set."""
        self._loop = asyncio.get_running_loop()
        self._stop_run = run.stop
        streams = [stream.name for stream in run.streams]
        grid = self.layout == "grid" or len(streams) > MAX_WINDOWS
        layout = GridLayout(streams) if grid else PerStream(streams)
        log.info("window: %s", ";  ".join(" ".join(k.split()) for k in KEY_HELP))
        self._display = self._pool.executor.submit(self._show_until_closed, layout)

    def frame(self, stream: str, image: np.ndarray, timeline: float) -> None:
        """Keep a reference to the stream's newest frame (writer thread: returns at once)."""
        with self._lock:
            self._fresh[stream] = image

    async def stop(self) -> None:
        """Close the windows (on the display thread) and wait for it, bounded."""
        self._closing.set()
        display = self._display
        if display is None:
            return
        done, _ = await asyncio.to_thread(concurrent.futures.wait, [display], CLOSE_TIMEOUT_S)
        if not done:
            log.warning(
                "window: the display did not close within %.0f s (a HighGUI call is stuck); "
                "the run ends without it",
                CLOSE_TIMEOUT_S,
            )
        self._pool.executor.shutdown(wait=False)

    # --- the display thread ---------------------------------------------------------------

    def _show_until_closed(self, layout: PerStream | GridLayout) -> None:
        shown: set[str] = set()
        try:
            self._display_loop(layout, shown)
        except Exception:  # a broken display never stops the run: say so, close the windows
            log.exception("window: the display failed; the run goes on without it")
        finally:
            self._ended.set()
            with self._lock:
                self._fresh.clear()
            for window in shown:
                try:
                    self.gui.destroy_window(window)
                except Exception as exc:  # closing is best effort: the window may be gone
                    log.debug("window: closing %s: %s", window, exc)

    def _display_loop(self, layout: PerStream | GridLayout, shown: set[str]) -> None:
        next_show = time.monotonic()
        redraw: set[str] = set()
        opened: set[str] = set()
        while not self._closing.is_set():
            if time.monotonic() >= next_show:
                next_show = time.monotonic() + self.period
                redraw |= self._take_fresh(layout)
                for window in sorted(redraw):
                    self.gui.imshow(window, self._decorated(layout.images[window]))
                    shown.add(window)
                redraw.clear()
            delay_ms = max(1, round((next_show - time.monotonic()) * 1000))
            if not shown:  # HighGUI may return at once with no window open: sleep instead
                self._closing.wait(delay_ms / 1000)
                continue
            key = self.gui.wait_key(delay_ms)
            if key != -1 and self._on_key(key & 0xFF):
                redraw |= set(layout.images)
            closed = self._closed_window(shown, opened)
            if closed is not None:
                self._quit(f"window {closed!r} closed")
            if self.quit_reason is not None:
                return

    def _closed_window(self, shown: set[str], opened: set[str]) -> str | None:
        """A window the user closed: one seen open that no longer is (a toolkit may report a
        new window as not visible until it has mapped it)."""
        for window in sorted(shown):
            if self.gui.is_open(window):
                opened.add(window)
            elif window in opened:
                return window
        return None

    def _take_fresh(self, layout: PerStream | GridLayout) -> set[str]:
        with self._lock:
            fresh, self._fresh = self._fresh, {}
        if self._paused:
            return set()  # stored just before the pause: not shown
        return {layout.put(stream, image) for stream, image in fresh.items()}

    def _decorated(self, image: np.ndarray) -> np.ndarray:
        """The image with the pause mark and the key help, drawn on a copy when needed."""
        if not (self._paused or self._help):
            return image
        image = image.copy()
        if self._paused:
            outlined_text(image, "PAUSED (space resumes)", (10, image.shape[0] // 2), 0.7)
        if self._help:
            help_box(image, KEY_HELP)
        return image

    def _on_key(self, key: int) -> bool:
        """Act on a key; True when the windows must be redrawn."""
        if key in (ord("q"), ord("Q"), _ESC):
            self._quit("q" if key != _ESC else "Esc")
        elif key == ord(" "):
            self._paused = not self._paused
            log.info("window: display %s", "paused" if self._paused else "resumed")
            return True
        elif key in (ord("o"), ord("O")):
            self._overlay = not self._overlay
            log.info("window: overlay %s", "on" if self._overlay else "off")
        elif key in (ord("h"), ord("H")):
            self._help = not self._help
            return True
        return False

    def _quit(self, reason: str) -> None:
        """End the display and stop the run as Ctrl-C does (outputs are finished)."""
        self.quit_reason = reason
        log.info("window: %s: stopping the run, finishing the outputs", reason)
        loop, stop = self._loop, self._stop_run
        if loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: the run is over anyway
            loop.call_soon_threadsafe(stop.set)
