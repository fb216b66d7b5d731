"""The soak benchmark, short: live streams through server restarts leak no tasks, threads or
file descriptors, and the streams keep flowing after every restart."""

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
