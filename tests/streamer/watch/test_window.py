"""The on-screen window (`--show`): newest frames, keys, grid, never stalling the run.

This machine has no GUI OpenCV and no display, so the display logic runs against `FakeGui`, an
in-process HighGUI that records what is shown and replays key presses; the runs, clips, encoder
and files are real. The real OpenCV path is checked where it can be here: its refusal.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from fractions import Fraction
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from live_helpers import wait_until
from media import ffprobe, video_stream

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.core.events import Observer, Observers
from streamer.core.frame import Frame
from streamer.errors import ConfigError
from streamer.outputs.fanout import Outputs, VideoTiming
from streamer.outputs.overlay import Hud
from streamer.watch import _gui
from streamer.watch._layout import MAX_VIEW
from streamer.watch.window import GRID_WINDOW, GridLayout, WindowViewer, require_gui, show_mode


class FakeGui:
    """HighGUI in process: records each image shown (a copy) and the threads that called it;
    `press()` queues a key for `wait_key`; `close()` closes a window as the user would;
    `slow_s` makes each imshow take that long (a remote X server that cannot keep up)."""

    def __init__(self, slow_s: float = 0.0) -> None:
        self.slow_s = slow_s
        self.shown: list[tuple[str, np.ndarray]] = []
        self.destroyed: list[str] = []
        self.closed: set[str] = set()
        self.checked: set[str] = set()  # windows asked whether they are open
        self.threads: set[int] = set()
        self.waits = 0
        self._keys: queue.SimpleQueue[int] = queue.SimpleQueue()

    def imshow(self, window: str, image: np.ndarray) -> None:
        self.threads.add(threading.get_ident())
        time.sleep(self.slow_s)
        self.shown.append((window, image.copy()))

    def wait_key(self, delay_ms: int) -> int:
        self.threads.add(threading.get_ident())
        self.waits += 1
        try:
            return self._keys.get(timeout=delay_ms / 1000)
        except queue.Empty:
            return -1

    def destroy_window(self, window: str) -> None:
        self.threads.add(threading.get_ident())
        self.destroyed.append(window)

    def is_open(self, window: str) -> bool:
        self.threads.add(threading.get_ident())
        self.checked.add(window)
        return window not in self.closed

    def press(self, key: str | int) -> None:
        self._keys.put(ord(key) if isinstance(key, str) else key)

    def close(self, window: str) -> None:
        self.closed.add(window)


def stub_run(*names: str) -> SimpleNamespace:
    """What `WindowViewer.start` reads of a run: its streams' names and its stop event."""
    return SimpleNamespace(streams=[SimpleNamespace(name=n) for n in names], stop=asyncio.Event())


def rgb(value: tuple[int, int, int], size: tuple[int, int] = (320, 180)) -> np.ndarray:
    return np.full((size[1], size[0], 3), value, np.uint8)


async def started(viewer: WindowViewer, *names: str) -> SimpleNamespace:
    run = stub_run(*names)
    await viewer.start(run)
    return run


def live_config(clip, tmp_path) -> RunConfig:
    video = OutputConfig(video=str(tmp_path / "out.mp4"), preset="ultrafast")
    return RunConfig(input=f"clip={clip}", outputs=video, live=True)


def written_frames(path) -> int:
    return int(video_stream(ffprobe(path))["nb_read_frames"])


# ---------------------------------------------------------------------------------------------
# The display: newest frames, keys, layouts


async def test_the_newest_frame_is_shown_and_those_it_had_no_time_for_are_skipped():
    gui = FakeGui()
    viewer = WindowViewer(gui=gui)
    await started(viewer, "cam")
    try:
        assert viewer.wants_frames and not viewer.wants_raw
        for red in range(200):  # far faster than 30 fps
            viewer.frame("cam", rgb((red, 0, 255)), red / 25)
        await wait_until(lambda: gui.shown and gui.shown[-1][1][0, 0, 2] == 199, 5, "frame 199")
        reds = [int(image[0, 0, 2]) for _, image in gui.shown]
        assert reds == sorted(set(reds))  # in order, none twice
        assert len(reds) < 200  # the newest wins; the ones in between were never shown
        window, image = gui.shown[-1]
        assert window == "streamer: cam" and image.shape == (180, 320, 3)
        assert tuple(image[0, 0]) == (255, 0, 199)  # shown as OpenCV wants it: BGR
    finally:
        await viewer.stop()
    assert gui.destroyed == ["streamer: cam"]


async def test_space_pauses_the_display_only_and_resumes_it():
    gui = FakeGui()
    viewer = WindowViewer(gui=gui)
    await started(viewer, "cam")
    try:
        viewer.frame("cam", rgb((10, 10, 10)), 0.0)
        await wait_until(lambda: gui.shown, 5, "the first frame shown")
        gui.press(" ")
        await wait_until(lambda: viewer.paused, 5, "paused")
        assert not viewer.wants_frames  # nothing is drawn for a paused window
        viewer.frame("cam", rgb((20, 20, 20)), 0.04)  # a writer already past its check
        waits = gui.waits
        await wait_until(lambda: gui.waits >= waits + 5, 5, "five display ticks")
        assert all(image[5, 5, 0] == 10 for _, image in gui.shown)  # frame 2 never shown
        assert gui.shown[-1][1].max() == 255  # frame 1 again, with the pause mark in white
        gui.press(" ")
        await wait_until(lambda: not viewer.paused and viewer.wants_frames, 5, "resumed")
        viewer.frame("cam", rgb((30, 30, 30)), 0.08)
        await wait_until(lambda: gui.shown[-1][1][5, 5, 0] == 30, 5, "frame 3 shown")
    finally:
        await viewer.stop()


async def test_h_draws_the_key_help_on_a_copy_and_hides_it_again():
    gui = FakeGui()
    viewer = WindowViewer(gui=gui)
    await started(viewer, "cam")
    frame = rgb((40, 40, 40))
    try:
        viewer.frame("cam", frame, 0.0)
        await wait_until(lambda: gui.shown, 5, "the frame shown")
        gui.press("h")
        await wait_until(lambda: gui.shown[-1][1].max() == 255, 5, "the help drawn")
        assert (frame == 40).all()  # the pipeline's frame is never drawn on
        gui.press("h")
        await wait_until(lambda: (gui.shown[-1][1] == 40).all(), 5, "the help hidden")
    finally:
        await viewer.stop()


async def test_o_asks_for_frames_without_the_overlay():
    gui = FakeGui()
    viewer = WindowViewer(gui=gui)
    await started(viewer, "cam")
    try:
        viewer.frame("cam", rgb((1, 2, 3)), 0.0)  # keys reach a window once it is open
        await wait_until(lambda: gui.shown, 5, "the frame shown")
        gui.press("o")
        await wait_until(lambda: viewer.wants_raw, 5, "overlay off")
        assert not viewer.overlay and viewer.wants_frames
        gui.press("o")
        await wait_until(lambda: not viewer.wants_raw, 5, "overlay on")
    finally:
        await viewer.stop()


@pytest.mark.parametrize("how", ["Esc", "close"])
async def test_esc_or_closing_the_window_stops_the_run(how):
    gui = FakeGui()
    viewer = WindowViewer(gui=gui)
    run = await started(viewer, "cam")
    try:
        viewer.frame("cam", rgb((1, 2, 3)), 0.0)
        await wait_until(lambda: "streamer: cam" in gui.checked, 5, "the window seen open")
        if how == "Esc":
            gui.press(27)
        else:
            gui.close("streamer: cam")
        await wait_until(run.stop.is_set, 5, "the run told to stop")
        await wait_until(lambda: not viewer.running, 5, "the display over")
        assert not viewer.wants_frames and gui.destroyed == ["streamer: cam"]
    finally:
        await viewer.stop()


async def test_up_to_four_streams_get_a_window_each():
    gui = FakeGui()
    viewer = WindowViewer(gui=gui)
    await started(viewer, "a", "b", "c", "d")
    try:
        for name in "abcd":
            viewer.frame(name, rgb((ord(name), 0, 0)), 0.0)
        await wait_until(lambda: len({w for w, _ in gui.shown}) == 4, 5, "four windows")
        assert {w: int(i[0, 0, 2]) for w, i in gui.shown} == {
            f"streamer: {n}": ord(n) for n in "abcd"
        }
    finally:
        await viewer.stop()
    assert sorted(gui.destroyed) == [f"streamer: {n}" for n in "abcd"]


def test_grid_shape_is_as_square_as_possible():
    shapes = {n: GridLayout.shape(n) for n in (1, 2, 3, 4, 5, 9, 10, 16, 17)}
    assert shapes == {
        1: (1, 1), 2: (1, 2), 3: (2, 2), 4: (2, 2), 5: (2, 3),
        9: (3, 3), 10: (3, 4), 16: (4, 4), 17: (4, 5),
    }  # fmt: skip


def test_a_grid_of_any_size_fits_a_1080p_screen_with_its_names():
    for count in range(1, 26):
        grid = GridLayout([f"cam{i}" for i in range(count)])
        height, width = grid.canvas.shape[:2]
        assert width <= MAX_VIEW[0] and height <= MAX_VIEW[1], (count, width, height)
        assert grid.tile[0] >= 320 or count > 16  # no smaller than it must be


@pytest.mark.parametrize(("layout", "names"), [("auto", "abcde"), ("grid", "ab")])
async def test_beyond_four_streams_or_when_asked_one_grid_of_labelled_scaled_tiles(layout, names):
    gui = FakeGui()
    viewer = WindowViewer(layout, gui=gui)
    await started(viewer, *names)
    colours = {n: (60 + 20 * i, 30, 90 - 10 * i) for i, n in enumerate(names)}
    sizes = [(1280, 720), (640, 480), (320, 180), (1920, 1080), (100, 100)]
    try:
        for (name, colour), size in zip(colours.items(), sizes, strict=False):
            image = rgb(colour, size)
            image[: size[1] // 20] = 255  # a white band on top, where an alert's banner goes
            viewer.frame(name, image, 0.0)
        grid = GridLayout(list(names))
        rows, cols = grid.shape(len(names))
        width, height = grid.tile

        def tiles_filled() -> bool:
            if not gui.shown:
                return False
            image = gui.shown[-1][1]
            return all(
                tuple(image[y + height // 2, x + width // 2]) == colours[n][::-1]
                for n, (x, y) in ((n, grid.origin(i)) for i, n in enumerate(names))
            )

        await wait_until(tiles_filled, 5, "every tile shows its stream")
        assert {w for w, _ in gui.shown} == {GRID_WINDOW}
        canvas = gui.shown[-1][1]
        assert canvas.shape == (rows * height, cols * width, 3)
        label = GridLayout.LABEL_H
        assert width <= 480 and height - label == width * 9 // 16 // 2 * 2  # scaled down, 16:9
        for index in range(len(names)):
            x, y = grid.origin(index)
            band = canvas[y : y + label, x : x + width]
            assert band.max() == 255  # the stream's name, in white
        # The name's strip is above the picture, not on it: the 16:9 frame fills the rest of
        # its tile, its top band (the overlay's alert banner) whole and undimmed under it.
        x, y = grid.origin(0)
        assert (canvas[y + label : y + label + 2, x : x + width] == 255).all()
        assert tuple(canvas[y + height - 1, x + width // 2]) == colours[names[0]][::-1]
        if len(names) > 1:  # 640×480 in a 16:9 tile: black bars left and right
            x, y = grid.origin(1)
            assert (canvas[y + height // 2, x : x + 5] == 0).all()
        if len(names) == 5:  # the sixth cell has no stream
            x, y = grid.origin(5)
            assert (canvas[y : y + height, x : x + width] == 0).all()
    finally:
        await viewer.stop()


# ---------------------------------------------------------------------------------------------
# Real runs: small_clip played live, the tiny CLIP, an MP4 output


async def test_q_ends_the_run_cleanly_and_the_video_is_playable(tmp_path, small_clip, tiny_encoder):
    gui = FakeGui()
    viewer = WindowViewer(gui=gui)
    config = live_config(small_clip, tmp_path)
    task = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, observers=[viewer]))
    await wait_until(lambda: gui.shown or task.done(), 30, "the first frame shown")
    gui.press("q")
    summary = await asyncio.wait_for(task, 30)
    assert viewer.quit_reason == "q"
    assert summary.interrupted and 0 < summary.frames < 50
    assert written_frames(tmp_path / "out.mp4") == summary.frames
    assert gui.destroyed == ["streamer: clip"]
    # Every HighGUI call came from one thread, and not the event loop's.
    assert len(gui.threads) == 1 and threading.get_ident() not in gui.threads


async def test_a_paused_display_leaves_the_run_going(tmp_path, small_clip, tiny_encoder):
    gui = FakeGui()
    viewer = WindowViewer(gui=gui)
    config = live_config(small_clip, tmp_path)
    task = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, observers=[viewer]))
    await wait_until(lambda: gui.shown or task.done(), 30, "the first frame shown")
    gui.press(" ")
    await wait_until(lambda: viewer.paused, 5, "paused")
    shown_at_pause = len(gui.shown)
    summary = await asyncio.wait_for(task, 30)
    assert not summary.interrupted  # the clip played to its end
    assert len(gui.shown) <= shown_at_pause + 1  # at most the pause mark, no new frame
    assert summary.frames >= 25 and written_frames(tmp_path / "out.mp4") == summary.frames


async def test_a_slow_display_does_not_slow_the_run(tmp_path, small_clip, tiny_encoder):
    gui = FakeGui(slow_s=0.5)  # 2 frames a second at best
    viewer = WindowViewer(gui=gui)
    config = live_config(small_clip, tmp_path)
    summary = await run_pipeline(config, encoder=tiny_encoder, observers=[viewer])
    stream = summary.streams[0]
    # Had the writer waited for the display, a 2 s live clip would deliver about 4 frames.
    assert stream.frames >= 35 and len(gui.shown) <= 6
    assert written_frames(tmp_path / "out.mp4") == stream.frames


# ---------------------------------------------------------------------------------------------
# Frames without the overlay (`wants_raw`): the writer's side


class Keeper(Observer):
    def __init__(self, raw: bool) -> None:
        self.raw = raw
        self.images: list[np.ndarray] = []

    @property
    def wants_frames(self) -> bool:
        return True

    @property
    def wants_raw(self) -> bool:
        return self.raw

    def frame(self, stream, image, timeline) -> None:
        self.images.append(image)


def write_one(observers: list[Observer], video: str | None = None, shared: bool = False) -> Frame:
    timing = VideoTiming(Fraction(1, 1000), None, media=False)
    outputs = Outputs(OutputConfig(video=video, preset="ultrafast"), timing, None, "cam",
                      Observers(observers))  # fmt: skip
    frame = Frame("cam", 0, 0.0, time.monotonic(), rgb((40, 40, 40)))
    try:
        outputs.write_frame(frame, 0.0, None, None, Hud(lines=("cam  0.0 s",)), shared=shared)
    finally:
        outputs.close()
    return frame


def test_raw_frames_are_not_drawn_when_nothing_needs_the_overlay():
    raw = Keeper(raw=True)
    frame = write_one([raw])
    assert raw.images[0] is frame.image  # handed on as decoded: no copy, no drawing
    assert (frame.image == 40).all()


def test_raw_and_drawn_observers_each_get_theirs(tmp_path):
    raw, drawn = Keeper(raw=True), Keeper(raw=False)
    frame = write_one([raw, drawn])
    assert (raw.images[0] == 40).all() and raw.images[0] is not frame.image
    assert drawn.images[0].max() > 40  # the HUD is drawn
    assert len(raw.images) == len(drawn.images) == 1


@pytest.mark.parametrize("shared", [False, True])
def test_a_video_output_keeps_its_overlay_while_a_window_shows_raw(tmp_path, shared):
    raw = Keeper(raw=True)
    frame = write_one([raw], video=str(tmp_path / "out.mp4"), shared=shared)
    assert (raw.images[0] == 40).all()  # not drawn on, before or after
    # Unshared frames are drawn in place (the raw observer has its own copy); shared ones on
    # a copy, and the raw observer gets the frame itself.
    assert (raw.images[0] is frame.image) == shared
    assert (frame.image.max() > 40) != shared
    assert written_frames(tmp_path / "out.mp4") == 1


# ---------------------------------------------------------------------------------------------
# No GUI here: the refusal, before any work


@pytest.mark.integration
def test_show_with_headless_opencv_exits_2_naming_the_fix(tmp_path, small_clip):
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, DISPLAY=":0")  # a display is not the problem: the OpenCV build is
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run", str(small_clip), "--show", "--jsonl", str(out),
         "--model", "tiny", "--weights", "random", "--no-llm"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "no window support (opencv-python-headless)" in done.stderr
    assert "pip install opencv-python" in done.stderr and "--serve" in done.stderr
    assert not out.exists() and "RANDOM" not in done.stderr  # refused before any work


async def test_the_python_api_refuses_show_without_a_gui(tmp_path, small_clip, tiny_encoder):
    config = RunConfig(input=str(small_clip), show=True)
    with pytest.raises(ConfigError, match="no window support"):
        await run_pipeline(config, encoder=tiny_encoder)
    with pytest.raises(ConfigError, match="no window support"):
        show_mode("grid")
    assert show_mode(None) is False
    with pytest.raises(ConfigError, match="'auto' or 'grid'"):
        WindowViewer("mosaic", gui=FakeGui())  # type: ignore[arg-type]


def test_a_gui_without_a_display_is_refused_naming_the_variables(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")
    # The installed OpenCV has no GUI, so this path is reached by saying it has one.
    monkeypatch.setattr(cv2, "currentUIFramework", lambda: "GTK3")
    monkeypatch.setattr(_gui, "x_display_reachable", lambda display: True)  # no X server here
    with pytest.raises(ConfigError, match="neither DISPLAY nor WAYLAND_DISPLAY") as error:
        require_gui(environ={}, platform="linux")
    assert "--serve" in str(error.value)
    require_gui(environ={"WAYLAND_DISPLAY": "wayland-0"}, platform="linux")
    require_gui(environ={"DISPLAY": ":0"}, platform="linux")
    require_gui(environ={}, platform="darwin")
    assert show_mode("grid") == "grid" and show_mode(True) is True
    with pytest.raises(ConfigError, match="nothing or 'grid'"):
        show_mode("mosaic")
