"""The window's GUI backend: the HighGUI calls behind a small protocol, and the startup check.

The display logic (`streamer.watch.window`) runs the same against OpenCV (`OpenCvGui`) and
against an in-process backend in tests. The project installs `opencv-python-headless`, which
has no HighGUI: `require_gui` says so before any work, with the fix.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from typing import Protocol

import cv2
import numpy as np

from streamer.errors import ConfigError

__all__ = ["GuiBackend", "OpenCvGui", "require_gui"]

_FIX = "watch in a browser with --serve PORT, or write a video with -o"


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
    display, wayland = environ.get("DISPLAY"), environ.get("WAYLAND_DISPLAY")
    if not (display or wayland):
        raise ConfigError(
            "--show: there is no display to open a window on (neither DISPLAY nor "
            "WAYLAND_DISPLAY is set: an SSH session or a service?). Fix: run it in a desktop "
            f"session or over `ssh -X`, or {_FIX}"
        )
    if display and not wayland and not x_display_reachable(display):
        # The toolkit would abort the whole process at the first window, outputs unfinished.
        raise ConfigError(
            f"--show: cannot reach the X display DISPLAY={display} (its X server is gone, or "
            "an SSH session's forwarding is closed). Fix: run it in a desktop session or over "
            f"`ssh -X`, or {_FIX}"
        )


def x_display_reachable(display: str, timeout_s: float = 2.0) -> bool:
    """Whether the X server of `display` (DISPLAY's value) accepts a connection.

    ":N" is the local socket /tmp/.X11-unix/XN (Linux's abstract one too), "HOST:N" is TCP port
    6000+N (`ssh -X` gives "localhost:10.0"). A value this cannot parse counts as reachable.
    """
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return True
    if host not in ("", "unix"):
        try:
            socket.create_connection((host, 6000 + int(number)), timeout_s).close()
            return True
        except OSError:
            return False
    path = f"/tmp/.X11-unix/X{number}"
    for address in ("\0" + path, path):  # Linux's abstract socket, then the file
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                sock.connect(address)
                return True
        except OSError:
            continue
    return False


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
    """HighGUI through OpenCV: resizable windows that keep the frame's aspect ratio.

    A new window opens at its image's size (Qt, the toolkit of PyPI's `opencv-python` on
    Linux, would open a resizable window at 400x300 whatever it shows). A window the user
    closed reads as closed whichever way the toolkit reports it: GTK answers -1, Qt raises
    once its last window is gone.
    """

    def __init__(self) -> None:
        require_gui()
        self._made: set[str] = set()

    def imshow(self, window: str, image: np.ndarray) -> None:
        if window not in self._made:
            flags = cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL
            cv2.namedWindow(window, flags)
            cv2.resizeWindow(window, image.shape[1], image.shape[0])
            self._made.add(window)
        cv2.imshow(window, image)

    def wait_key(self, delay_ms: int) -> int:
        return cv2.waitKey(delay_ms)

    def destroy_window(self, window: str) -> None:
        self._made.discard(window)
        cv2.destroyWindow(window)

    def is_open(self, window: str) -> bool:
        try:
            return cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:  # Qt with no window left: "NULL guiReceiver (please create a window)"
            return False
