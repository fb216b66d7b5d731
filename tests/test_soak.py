"""The soak benchmark, short: live streams through server restarts leak no tasks, threads or
file descriptors, and the streams keep flowing after every restart; a stream added and removed
through the API again and again with MQTT on leaks nothing either."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # a minute of live streams


def test_a_short_soak_with_server_restarts_shows_no_growth(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", "0.9", "--streams", "2",
         "--restart-every", "15", "--sample-every", "2", "--warmup", "12", "--out", tmp_path],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["restarts"] >= 3 and result["reconnects"] >= 4
    assert set(result["growth_after_warmup"]) == {"rss_mb", "fds", "threads", "tasks"}
    rows = [r.split(",") for r in (tmp_path / "soak.csv").read_text().splitlines()[1:]]
    late = [r for r in rows if float(r[0]) >= 12]
    half = len(late) // 2
    # A reconnect briefly adds or removes a socket, a decode thread, a task: compare the
    # floor of each series in the second half with the first. Anything leaking raises it.
    for column, name in ((2, "fds"), (3, "threads"), (4, "tasks")):
        first, second = late[:half], late[half:]
        floor_first = min(int(r[column]) for r in first)
        floor_second = min(int(r[column]) for r in second)
        assert floor_second <= floor_first, (name, floor_first, floor_second)
    analysed = [int(r[5]) for r in rows]
    restarts = [int(r[6]) for r in rows]
    last = restarts.index(max(restarts))
    assert analysed[-1] > analysed[last]  # frames flow again after the last restart
    image = cv2.imread(str(tmp_path / "soak.png"))
    assert image is not None and image.shape[0] > 600 and image.std() > 10


def test_a_short_soak_of_streams_added_and_removed_with_mqtt_shows_no_growth(tmp_path):
    """`--churn`: a stream added (POST) and removed (DELETE) through the viewer's API every
    3 s for half a minute, MQTT publishing to a real mosquitto: after the first churns every
    sample (taken once a removal is done) has the same threads, tasks and file descriptors,
    and the broker took the messages."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", "0.5", "--streams", "1",
         "--churn", "3", "--mqtt", "--restart-every", "0", "--warmup", "6", "--out", tmp_path],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["churns"] >= 6, result
    assert result["mqtt"]["published_total"] > 0 and result["mqtt"]["connected"] == 1, result
    rows = [r.split(",") for r in (tmp_path / "soak.csv").read_text().splitlines()[1:]]
    late = [r for r in rows if float(r[0]) >= 6]
    for column, name in ((2, "fds"), (3, "threads"), (4, "tasks")):
        values = [int(r[column]) for r in late]
        assert max(values[len(values) // 2 :]) <= max(values[: len(values) // 2]), (name, values)
