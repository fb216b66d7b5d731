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

HighGUI sits behind a small backend (`GuiBackend`: imshow, wait_key, destroy_window, is_open),
so the display logic runs the same against OpenCV and against an in-process backend in tests.
The project installs `opencv-python-headless`, which has no HighGUI: `require_gui` says so
before any work, with the fix. (On macOS, Cocoa wants HighGUI on the main thread; this viewer
runs it on its own thread, which Linux's GTK and Qt backends and Windows accept.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from streamer.core.background import LowPriorityPool
from streamer.core.events import Observer
from streamer.errors import ConfigError

__all__ = [
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
MAX_VIEW = (1920, 1080)  # larger frames are scaled down to fit a screen
GRID_WINDOW = "streamer"
CLOSE_TIMEOUT_S = 2.0  # how long stop() waits for the display thread to close its windows
KEY_HELP = (
    "q / Esc  quit (outputs are finished)",
    "space    pause / resume the display",
    "o        overlay off / on",
    "h        this help",
)
_ESC = 27

_FIX = "watch in a browser with --serve PORT, or write a video with -o"


# ---------------------------------------------------------------------------------------------
# The GUI backend and the startup check


class GuiBackend(Protocol):
    """The HighGUI calls the viewer makes, all from its one display thread."""

    def imshow(self, window: str, image: np.ndarray) -> None:
        """Show a BGR uint8 image in `window`, creating the window the first time."""

    def wait_key(self, delay_ms: int) -> int:
        """Process window events for up to `delay_ms`; the key pressed, or -1."""

    def destroy_window(self, window: str) -> None:
        """Close `window`."""

    def is_open(self, window: str) -> bool:
        """Whether `window` is still open (False once the user closed it)."""


def require_gui(environ: Mapping[str, str] | None = None, platform: str | None = None) -> None:
    """Fail with a ConfigError unless OpenCV can open a window on a display here.

    Checked before any work (and before any HighGUI call: a GUI toolkit with no display may
    end the process instead of raising).

    Args:
        environ: the environment to look for a display in (default: this process's).
        platform: `sys.platform` (default: this one's).

    Raises:
        ConfigError: the OpenCV build has no GUI (opencv-python-headless), or there is no
            display (Linux: neither DISPLAY nor WAYLAND_DISPLAY is set).
    """
    framework = _gui_framework()
    if not framework:
        raise ConfigError(
            f"--show: this OpenCV build ({cv2.__version__}) has no window support "
            "(opencv-python-headless). Fix: pip uninstall -y opencv-python-headless && "
            f"pip install opencv-python, or {_FIX}"
        )
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform in ("win32", "darwin", "cygwin"):
        return
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        raise ConfigError(
            "--show: there is no display to open a window on (neither DISPLAY nor "
            "WAYLAND_DISPLAY is set: an SSH session or a service?). Fix: run it in a desktop "
            f"session or over `ssh -X`, or {_FIX}"
        )


def _gui_framework() -> str:
    """The GUI toolkit OpenCV was built with ("GTK3", "QT5", "WIN32UI", ...), "" for none."""
    current = getattr(cv2, "currentUIFramework", None)
    if current is not None:
        return str(current())
    for line in cv2.getBuildInformation().splitlines():  # OpenCV before 4.6
        key, _, value = line.partition(":")
        if key.strip() == "GUI":
            return "" if value.strip().upper() in ("", "NONE") else value.strip()
    return ""


class OpenCvGui:
    """HighGUI through OpenCV: resizable windows that keep the frame's aspect ratio."""

    def __init__(self) -> None:
        require_gui()
        self._made: set[str] = set()

    def imshow(self, window: str, image: np.ndarray) -> None:
        if window not in self._made:
            flags = cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL
            cv2.namedWindow(window, flags)
            self._made.add(window)
        cv2.imshow(window, image)

    def wait_key(self, delay_ms: int) -> int:
        return cv2.waitKey(delay_ms)

    def destroy_window(self, window: str) -> None:
        self._made.discard(window)
        cv2.destroyWindow(window)

    def is_open(self, window: str) -> bool:
        return cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) >= 1


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
# Layouts: what each window shows


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled down (never up) to fit inside `size` (width, height), aspect kept."""
    height, width = image.shape[:2]
    scale = min(size[0] / width, size[1] / height)
    if scale >= 1:
        return image
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, new, interpolation=cv2.INTER_AREA)


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5) -> None:
    """White text with a dark outline: readable on any picture."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, text, org, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, font, scale, (255, 255, 255), 1, cv2.LINE_AA)


class _PerStream:
    """One window per stream, named "streamer: NAME"."""

    def __init__(self, streams: Sequence[str]) -> None:
        self.windows = {name: f"streamer: {name}" for name in streams}
        self.images: dict[str, np.ndarray] = {}

    def put(self, stream: str, rgb: np.ndarray) -> str:
        window = self.windows.setdefault(stream, f"streamer: {stream}")
        self.images[window] = cv2.cvtColor(_fit(rgb, MAX_VIEW), cv2.COLOR_RGB2BGR)
        return window


class GridLayout:
    """Every stream in one window: tiles in rows, each labelled with its stream's name.

    Streams fill the tiles in order, left to right and top to bottom; a tile keeps its frame's
    aspect ratio (black bars) and shows "waiting" until its stream's first frame.

    Args:
        streams: the stream names, in tile order.
        tile: one tile's (width, height); default: 16:9, at most 480 wide, the grid at most
            1920 wide.
    """

    LABEL_H = 22

    def __init__(self, streams: Sequence[str], tile: tuple[int, int] | None = None) -> None:
        if not streams:
            raise ValueError("a grid needs at least one stream")
        self.streams = list(streams)
        self.rows, self.cols = self.shape(len(self.streams))
        if tile is None:
            width = min(480, MAX_VIEW[0] // self.cols) // 2 * 2
            tile = (width, width * 9 // 16 // 2 * 2)
        self.tile = tile
        self.canvas = np.zeros((self.rows * tile[1], self.cols * tile[0], 3), np.uint8)
        self.images = {GRID_WINDOW: self.canvas}
        for index, name in enumerate(self.streams):
            self._label(index, f"{name}  (waiting)")

    @staticmethod
    def shape(count: int) -> tuple[int, int]:
        """(rows, columns) for `count` tiles: as square as possible, wider than tall."""
        cols = math.ceil(math.sqrt(count))
        return math.ceil(count / cols), cols

    def origin(self, index: int) -> tuple[int, int]:
        """The (x, y) of tile `index`'s top-left corner in the canvas."""
        row, col = divmod(index, self.cols)
        return col * self.tile[0], row * self.tile[1]

    def put(self, stream: str, rgb: np.ndarray) -> str:
        if stream not in self.streams:
            return GRID_WINDOW  # a stream the run did not announce: no tile for it
        index = self.streams.index(stream)
        x, y = self.origin(index)
        width, height = self.tile
        cell = self.canvas[y : y + height, x : x + width]
        fitted = cv2.resize(
            rgb, self._inside(rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA
        )
        cell[:] = 0
        top, left = (height - fitted.shape[0]) // 2, (width - fitted.shape[1]) // 2
        cell[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted[..., ::-1]
        self._label(index, stream)
        return GRID_WINDOW

    def _inside(self, width: int, height: int) -> tuple[int, int]:
        scale = min(self.tile[0] / width, self.tile[1] / height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def _label(self, index: int, text: str) -> None:
        x, y = self.origin(index)
        band = self.canvas[y : y + self.LABEL_H, x : x + self.tile[0]]
        band[:] = band // 3  # darken, so the name reads on any picture
        _text(self.canvas, text, (x + 6, y + 16))


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
        layout = GridLayout(streams) if grid else _PerStream(streams)
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

    def _show_until_closed(self, layout: _PerStream | GridLayout) -> None:
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

    def _display_loop(self, layout: _PerStream | GridLayout, shown: set[str]) -> None:
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

    def _take_fresh(self, layout: _PerStream | GridLayout) -> set[str]:
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
            _text(image, "PAUSED (space resumes)", (10, image.shape[0] // 2), 0.7)
        if self._help:
            _help_box(image, KEY_HELP)
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


def _help_box(image: np.ndarray, lines: Iterable[str]) -> None:
    """The key help in a dark box, centred."""
    lines = list(lines)
    line_h, width = 24, 360
    height = line_h * len(lines) + 12
    x = max(0, (image.shape[1] - width) // 2)
    y = max(0, (image.shape[0] - height) // 2)
    box = image[y : y + height, x : x + width]
    box[:] = box // 4
    for index, line in enumerate(lines):
        _text(image, line, (x + 10, y + 24 + index * line_h))
