"""`streamer run --config FILE` reloads its file on SIGHUP: a real command, real cameras."""

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from live_helpers import RtspServer, free_port
from media import ffprobe, video_stream

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def cams(gst_rtsp):
    """Three live cameras: /cam1, /cam2, /cam3."""
    server = RtspServer(gst_rtsp, {"cam1": "pattern", "cam2": "pattern", "cam3": "pattern"})
    server.start()
    yield server
    server.kill()


def _write(path, port: int, sources: dict[str, str], extra: str = "") -> None:
    entries = "".join(f'[[sources]]\nname = "{n}"\ninput = "{s}"\n' for n, s in sources.items())
    out = path.parent
    path.write_text(
        f'output = "{out}/{{stream}}.mp4"\njsonl = "{out}/{{stream}}.jsonl"\n'
        f'serve = "127.0.0.1:{port}"\nserve-token = "{TOKEN}"\nstatus-every = 1\n'
        'model = "tiny"\nweights = "random"\npreset = "ultrafast"\nno-llm = true\n'
        f"{extra}\n{entries}",
        encoding="utf-8",
    )


class _Stderr:
    """A process's stderr, read on a thread (the status table keeps writing)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.chunks: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self.thread.start()

    def _read(self, pipe) -> None:
        for line in iter(pipe.readline, ""):
            self.chunks.append(line)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s: {self.text}"
            time.sleep(0.05)


def _streams(port: int) -> dict[str, int]:
    """Each stream's delivered frames, by name, as the API lists them; {} before it serves."""
    ask = urllib.request.Request(f"http://127.0.0.1:{port}/api/streams",
                                 headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    try:
        with urllib.request.urlopen(ask, timeout=5) as answer:
            listed = json.load(answer)["streams"]
    except OSError:
        return {}
    return {s["name"]: s["frames"]["delivered"] for s in listed}


def _running(port: int, names: list[str]):
    """Whether the run's streams are `names`, in order, each past its first frames."""

    def check() -> bool:
        streams = _streams(port)
        return list(streams) == names and all(streams[n] > 10 for n in names)

    return check


def _until(condition, timeout: float, what: str, proc, stderr) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the command ended: {stderr.text}"
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}: {stderr.text}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.integration
def test_sighup_reloads_the_file_and_a_broken_one_changes_nothing(tmp_path, cams):
    toml, port = tmp_path / "cams.toml", free_port()
    _write(toml, port, {"yard": cams.url("cam1"), "door": cams.url("cam2")})
    command = [sys.executable, "-m", "streamer", "run", "--config", str(toml)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = _Stderr(proc)
    try:
        _until(_running(port, ["yard", "door"]), 120, "yard and door run", proc, stderr)

        _write(toml, port, {"yard": cams.url("cam1"), "gate": cams.url("cam3")}, "top-k = 3")
        proc.send_signal(signal.SIGHUP)
        stderr.wait_for(r"reload: \+gate, -door; 1 option\(s\) changed for the next start", 60)
        assert "reload: top-k: changed in the file; takes effect at the next start" in stderr.text
        _until(_running(port, ["yard", "gate"]), 60, "gate added, door removed", proc, stderr)
        # Under the status table: the time and what the last reload did.
        stderr.wait_for(r"\n\d\d:\d\d:\d\d reload: \+gate, -door", 10)

        toml.write_text(toml.read_text().replace("[[sources]]", "[[sources]", 1))
        proc.send_signal(signal.SIGHUP)
        stderr.wait_for(r"reload: the running configuration is kept: .*not valid TOML", 30)
        # ... and under the table (its first line; the log has the marked line too).
        stderr.wait_for(r"\n\d\d:\d\d:\d\d reload: the running configuration is kept: .*"
                        r"line 11, column 10: not valid TOML", 10)  # fmt: skip
        time.sleep(1.0)
        assert list(_streams(port)) == ["yard", "gate"] and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        stderr.thread.join(10)
        proc.stderr.close()
    assert proc.returncode == 143, stderr.text
    for name in ("yard", "door", "gate"):  # door's when it was removed, the others' at the end
        assert int(video_stream(ffprobe(tmp_path / f"{name}.mp4"))["nb_read_frames"]) > 10
