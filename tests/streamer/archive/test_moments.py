"""Moments and the picker that decides which analysed frames become rows, by stepping time."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.archive.moments import Moment, MomentPicker, thumbnail_jpeg
from streamer.errors import ConfigError


def direction(angle: float) -> np.ndarray:
    """A unit vector in the plane: the cosine distance between two is 1 - cos(angle difference)."""
    return np.array([np.cos(angle), np.sin(angle), 0.0], np.float32)


SAME = direction(0.0)
FAR = direction(np.pi / 2)  # cosine distance 1 from SAME


def test_a_stream_gets_a_row_at_least_every_interval_of_its_time():
    picker = MomentPicker(index_every_s=10, scene_threshold=0.3)
    picked = [t for t in np.arange(0, 35, 0.5) if picker.pick("cam", float(t), SAME)]
    assert picked == [0.0, 10.0, 20.0, 30.0]


def test_the_reasons_and_scores_of_the_picks():
    picker = MomentPicker(index_every_s=10, scene_threshold=0.3)
    first = picker.pick("cam", 0.0, SAME)
    assert (first.reason, first.scene_score) == ("first", 0.0)
    assert picker.pick("cam", 1.0, SAME) is None
    scene = picker.pick("cam", 2.0, FAR)
    assert scene.reason == "scene" and scene.scene_score == pytest.approx(1.0, abs=1e-6)
    interval = picker.pick("cam", 12.0, FAR)  # ten seconds after the scene row, not the first
    assert interval.reason == "interval" and interval.scene_score == pytest.approx(0, abs=1e-6)


def test_a_scene_change_makes_a_row_at_once_and_only_one():
    picker = MomentPicker(index_every_s=10, scene_threshold=0.3)
    picker.pick("cam", 0.0, SAME)
    rows = [t for t in (0.5, 1.0, 1.5, 2.0, 2.5) if picker.pick("cam", t, FAR)]
    assert rows == [0.5]  # the new scene stays, and stays one row until the interval


def test_a_slow_drift_is_measured_from_the_last_row_not_the_last_frame():
    picker = MomentPicker(index_every_s=100, scene_threshold=0.3)
    picker.pick("cam", 0.0, direction(0.0))
    # 0.1 rad a second: each step is a cosine distance of 0.005, far below the threshold,
    # but the picture has moved 1 - cos(0.8) = 0.30 from the last row at t = 8.
    picked = [t for t in range(1, 20) if picker.pick("cam", float(t), direction(0.1 * t))]
    assert picked[0] == 8
    assert picked == [8, 16]


def test_streams_are_picked_independently():
    picker = MomentPicker(index_every_s=5, scene_threshold=0.3)
    assert picker.pick("a", 0.0, SAME).reason == "first"
    assert picker.pick("b", 3.0, SAME).reason == "first"
    assert picker.pick("a", 4.0, SAME) is None
    assert picker.pick("a", 5.0, SAME).reason == "interval"
    assert picker.pick("b", 5.0, SAME) is None


def test_time_going_back_or_forget_starts_the_stream_afresh():
    picker = MomentPicker(index_every_s=10, scene_threshold=0.3)
    picker.pick("cam", 50.0, SAME)
    assert picker.pick("cam", 0.0, SAME).reason == "first"  # a reconnect restarted its clock
    picker.forget("cam")
    assert picker.pick("cam", 1.0, SAME).reason == "first"
    picker.forget("never-seen")  # no error


@pytest.mark.parametrize(
    ("every", "threshold", "message"),
    [(0, 0.3, "`index_every_s` must be > 0 seconds, got 0"),
     ("10s", 0.3, "`index_every_s` must be > 0 seconds, got '10s'"),
     (1, 0, r"`scene_threshold` must be a cosine distance in \(0, 2\], got 0"),
     (1, 2.5, "scene_threshold"), (1, float("nan"), "scene_threshold"), (True, 0.3, "True")],
)  # fmt: skip
def test_the_picker_refuses_bad_settings(every, threshold, message):
    with pytest.raises(ConfigError, match=message):
        MomentPicker(every, threshold)


def test_a_moment_needs_a_flat_embedding_a_stream_and_finite_times():
    Moment("cam", np.float32(0.5), 1.0, SAME)  # NumPy's numbers are numbers
    with pytest.raises(ConfigError, match="1-D numpy array, got \\(1, 3\\)"):
        Moment("cam", 0.0, 1.0, SAME[None, :])
    with pytest.raises(ConfigError, match="1-D numpy array, got list"):
        Moment("cam", 0.0, 1.0, [1.0, 0.0])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="`stream` must be a non-empty name, got ''"):
        Moment("", 0.0, 1.0, SAME)
    for bad in (float("nan"), float("inf"), "12:00", None, False):
        with pytest.raises(ConfigError, match="`wall_time` must be a finite number"):
            Moment("cam", 0.0, bad, SAME)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="`media_time` must be a finite number"):
        Moment("cam", float("-inf"), 1.0, SAME)


def test_a_thumbnail_is_a_small_jpeg_of_the_same_picture():
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:, :640] = (255, 0, 0)  # red left half
    jpeg = thumbnail_jpeg(image)
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) < 10_000
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)  # fmt: skip
    assert decoded.shape == (108, 192, 3)
    assert decoded[54, 40, 0] > 200 and decoded[54, 40, 2] < 60  # still red on the left
    assert decoded[54, 150].max() < 60  # still black on the right
    small = np.full((50, 80, 3), 128, np.uint8)
    assert cv2.imdecode(np.frombuffer(thumbnail_jpeg(small), np.uint8), 1).shape == (50, 80, 3)


def test_a_thumbnail_refuses_what_is_not_a_picture():
    with pytest.raises(ConfigError, match="HxWx3 uint8"):
        thumbnail_jpeg(np.zeros((10, 10, 3), np.float32))
