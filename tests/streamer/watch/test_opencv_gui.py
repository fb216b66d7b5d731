"""`OpenCvGui` against a stand-in for a GUI build of OpenCV (this machine's has none).

The stand-in behaves as Qt, the toolkit of PyPI's `opencv-python` on Linux: a resizable window
opens at 400x300 whatever it shows, and asking about a window once the last one is closed
raises `cv2.error` ("NULL guiReceiver").
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest

from streamer.watch import _gui
from streamer.watch._gui import OpenCvGui
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
