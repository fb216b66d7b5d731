"""A real RTSP server in its own process (GStreamer's, run by Debian's Python), started and
stopped from a test or a benchmark.

Example:
    >>> server = RtspServer(SYSTEM_PYTHON, {"cam1": "pattern"})  # doctest: +SKIP
    >>> server.start()
    >>> url = server.url("cam1")  # rtsp://127.0.0.1:PORT/cam1
    >>> server.kill()
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from pathlib import Path

__all__ = ["RTSP_SERVER", "SYSTEM_PYTHON", "RtspServer", "RtspServerError", "free_port"]

# GStreamer's Python bindings (`gi`) come with Debian's Python, not with the project's venv.
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).resolve().parent / "rtsp_server.py"


class RtspServerError(RuntimeError):
    """The RTSP server process did not come up."""


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspServer:
    """A real RTSP server process on 127.0.0.1.

    Args:
        python: the interpreter that has GStreamer's bindings (`SYSTEM_PYTHON`).
        mounts: path → what it serves, as `rtsp_server.py` takes it: "pattern" (a live 25 fps
            320×180 test pattern), "pattern:WxH[:encoding]", "lossy:SHARE", or an MP4 clip
            (served once at its own pace).
        port: the port to listen on; default: a free one.
    """

    def __init__(self, python: str, mounts: dict[str, str | Path], port: int | None = None):
        self.python = python
        self.mounts = mounts
        self.port = port or free_port()
        self.process: subprocess.Popen[str] | None = None

    def url(self, mount: str, userinfo: str = "") -> str:
        """The RTSP URL of `mount`, with `user:password` credentials when given."""
        auth = f"{userinfo}@" if userinfo else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{mount}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (again, on the same port) and wait for its READY line.

        Raises:
            RtspServerError: it exited or said nothing within `timeout` seconds.
        """
        args = [self.python, str(RTSP_SERVER), "--port", str(self.port)]
        for mount, what in self.mounts.items():
            args += ["--mount", f"{mount}={what}"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        ready = threading.Event()
        threading.Thread(target=self._await_ready, args=(ready,), daemon=True).start()
        if not ready.wait(timeout) or self.process.poll() is not None:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            err = self.process.stderr.read() if self.process.stderr else ""  # before kill()
            self.kill()  # closes the pipes
            raise RtspServerError(
                f"the RTSP server did not start on port {self.port}: {err[-500:]}"
            )

    def _await_ready(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == "READY":
                break
        ready.set()  # READY, or it exited: start() tells which by poll()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash or a power cut would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process is not None:
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is sent (a stall)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
