"""`OpenCvGui` against a stand-in for a GUI build of OpenCV (this machine's has none), and the
startup check that the X display named by DISPLAY is reachable.

The stand-in behaves as Qt, the toolkit of PyPI's `opencv-python` on Linux: a resizable window
opens at 400x300 whatever it shows, and asking about a window once the last one is closed
raises `cv2.error` ("NULL guiReceiver").
"""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest

from streamer.errors import ConfigError
from streamer.watch import _gui
from streamer.watch._gui import OpenCvGui, require_gui, x_display_reachable
from streamer.watch.window import WindowViewer


class QtLikeCv2:
    """The HighGUI calls `OpenCvGui` makes (cv2's names), with Qt's answers; `close()` is the
    user's click."""

    WINDOW_NORMAL, WINDOW_KEEPRATIO, WINDOW_GUI_NORMAL, WND_PROP_VISIBLE = 0, 0, 16, 4

    class error(Exception):
        pass

    def __init__(self) -> None:
        self.sizes: dict[str, tuple[int, int]] = {}
        self.asked = 0  # getWindowProperty calls

    def namedWindow(self, window: str, flags: int) -> None:
        self.sizes[window] = (400, 300)

    def resizeWindow(self, window: str, width: int, height: int) -> None:
        self.sizes[window] = (width, height)

    def imshow(self, window: str, image: np.ndarray) -> None:
        self.sizes.setdefault(window, (image.shape[1], image.shape[0]))

    def waitKey(self, delay_ms: int) -> int:
        time.sleep(delay_ms / 1000)
        return -1

    def destroyWindow(self, window: str) -> None:
        self.sizes.pop(window, None)

    def getWindowProperty(self, window: str, prop: int) -> float:
        self.asked += 1
        if not self.sizes:
            raise self.error("NULL guiReceiver (please create a window)")
        return 1.0 if window in self.sizes else -1.0

    def close(self, window: str) -> None:
        self.sizes.pop(window)


@pytest.fixture
def qt(monkeypatch) -> QtLikeCv2:
    fake = QtLikeCv2()
    monkeypatch.setattr(_gui, "cv2", fake)
    monkeypatch.setattr(_gui, "require_gui", lambda: None)
    return fake


def test_a_window_opens_at_the_size_of_what_it_shows(qt):
    gui = OpenCvGui()
    gui.imshow("streamer", np.zeros((540, 1440, 3), np.uint8))
    gui.imshow("streamer", np.zeros((540, 1440, 3), np.uint8))
    assert qt.sizes["streamer"] == (1440, 540)  # not Qt's 400x300, where text is unreadable


async def test_closing_the_last_window_stops_the_run(qt):
    viewer = WindowViewer(gui=OpenCvGui(), max_fps=200)
    run = SimpleNamespace(streams=[SimpleNamespace(name="cam")], stop=asyncio.Event())
    await viewer.start(run)
    viewer.frame("cam", np.zeros((90, 160, 3), np.uint8), 0.0)
    for _ in range(200):  # until the display loop has seen the window open
        if qt.asked:
            break
        await asyncio.sleep(0.01)
    qt.close("streamer: cam")
    await asyncio.wait_for(run.stop.wait(), 2)
    await viewer.stop()
    assert viewer.quit_reason == "window 'streamer: cam' closed"


def test_a_display_whose_x_server_is_gone_is_refused_before_any_window(monkeypatch):
    """A toolkit aborts the whole process at its first window on such a display (Qt: "could
    not connect to display"), leaving the outputs unfinished: refused at the start instead."""
    monkeypatch.setattr(_gui, "_gui_framework", lambda: "QT")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]  # free once closed: no X server there
    gone = f"127.0.0.1:{port - 6000}.0"
    with pytest.raises(ConfigError, match=f"cannot reach the X display DISPLAY={gone}") as error:
        require_gui(environ={"DISPLAY": gone}, platform="linux")
    assert "ssh -X" in str(error.value) and "--serve" in str(error.value)
    require_gui(environ={"DISPLAY": gone, "WAYLAND_DISPLAY": "wayland-0"}, platform="linux")


def test_an_x_server_is_found_over_tcp_and_on_its_local_socket():
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert x_display_reachable(f"127.0.0.1:{server.getsockname()[1] - 6000}")
    number = 20000 + time.monotonic_ns() % 10000
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(f"\0/tmp/.X11-unix/X{number}")  # Linux's abstract namespace
        server.listen()
        assert x_display_reachable(f":{number}.0") and x_display_reachable(f"unix:{number}")
    assert not x_display_reachable(f":{number}")
    assert x_display_reachable("not a display")  # left to the toolkit
