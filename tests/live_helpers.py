"""Running a live source in a test: collect its frames, poll for conditions with deadlines."""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness.rtsp import SYSTEM_PYTHON, RtspServer, free_port  # noqa: F401  (for the tests)
from streamer.core.channel import Channel, DropPolicy
from streamer.core.frame import Frame
from streamer.core.retry import RetryPolicy
from streamer.sources import SourceOptions, SourceRunner
from streamer.sources.options import DecodePlan

# Short timeouts and backoff, so failure paths take seconds; no jitter, so log lines are exact.
FAST = SourceOptions(
    open_timeout=2.0,
    read_timeout=2.0,
    reconnect=RetryPolicy(initial=0.2, cap=0.8, jitter=0.0),
)


class Running:
    """`async with Running(source) as run:` runs the source and collects its frames in
    `run.frames` until the block ends, then stops it (and checks it stopped).

    `plan`: what the source makes of each frame (its default: full-size RGB); `runner`: run
    it through a `SourceRunner` (e.g. in a decode worker) rather than by itself.
    """

    def __init__(
        self,
        source,
        capacity: int = 8,
        policy: DropPolicy = DropPolicy.DROP_OLDEST,
        *,
        plan: DecodePlan | None = None,
        runner: SourceRunner | None = None,
    ):
        self.source = source
        self.plan = plan
        self.runner = runner
        self.channel: Channel[Frame] = Channel(capacity, policy, name=source.name)
        self.stop = asyncio.Event()
        self.frames: list[Frame] = []
        self.task: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        if self.runner is not None:
            running = self.runner.run(self.source, self.channel, self.stop)
        elif self.plan is not None:
            running = self.source.run(self.channel, self.stop, self.plan)
        else:
            running = self.source.run(self.channel, self.stop)
        self.task = asyncio.create_task(running)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for frame in self.channel:
            self.frames.append(frame)

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop.set()
        assert self.task is not None and self._reader is not None
        await asyncio.wait_for(self.task, 5)
        await asyncio.wait_for(self._reader, 1)
        assert self.channel.closed

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll `condition` until true; return the seconds it took. Fails naming `what`."""
        return await wait_until(condition, timeout, f"{what} (status: {self.source.status})")

    async def ended(self, timeout: float) -> None:
        """Wait for the source to return by itself."""
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), timeout)


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


# ---------------------------------------------------------------------------------------------
# Servers for the live-source tests (fixtures in conftest.py start and stop them). The RTSP
# server is the benchmarks' too, so it lives in `bench.harness`; these names stay importable here.


class SilentServer:
    """A TCP server that accepts connections and never sends a byte (a hung camera)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Not printed: the path asked for is kept in the server's `requests`, where it has one."""
        requests = getattr(self.server, "requests", None)
        if requests is not None:
            requests.append(self.path)


class StaticServer:
    """Python's HTTP file server on 127.0.0.1 over `folder`, in a thread; `requests` lists the
    paths asked for, in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = self.requests  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class MjpegServer:
    """An HTTP MJPEG camera on 127.0.0.1 (`multipart/x-mixed-replace`, as IP cameras serve
    it): `jpegs` in a loop at `fps`; each connection is dropped after `per_connection` frames,
    as a flaky camera would."""

    def __init__(self, jpegs: list[bytes], fps: float = 25.0, per_connection: int = 30):
        self.jpegs = jpegs
        self.fps = fps
        self.per_connection = per_connection
        self.connections = 0
        handler = functools.partial(_MjpegHandler, self)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    def __init__(self, server_state: MjpegServer, *args: object) -> None:
        self.state = server_state
        super().__init__(*args)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # the standard library's name
        self.state.connections += 1
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        start = time.monotonic()
        try:
            for n in range(self.state.per_connection):
                jpeg = self.state.jpegs[n % len(self.state.jpegs)]
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                time.sleep(max(0.0, start + (n + 1) / self.state.fps - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            return


class FlakyFileServer:
    """HTTP on 127.0.0.1 serving one file whose first download breaks off half-way (the
    connection closes early); later downloads are whole."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.requests = 0
        handler = functools.partial(_FlakyHandler, self)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/remote.mp4"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    def __init__(self, server_state: FlakyFileServer, *args: object) -> None:
        self.state = server_state
        super().__init__(*args)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # the standard library's name
        self.state.requests += 1
        data = self.state.data
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data if self.state.requests > 1 else data[: len(data) // 2])
        self.close_connection = True


class GrowingPlaylist:
    """A live HLS playlist on 127.0.0.1 that grows as a live encoder's does: the segments of
    `folder/index.m3u8` (an ended playlist made beforehand) appear one per segment duration,
    `ahead` of them at the start, in a window of the last five, without `#EXT-X-ENDLIST`.
    Its URL is `url("live.m3u8")`; the segments are served as files."""

    def __init__(self, folder: Path, ahead: int = 2) -> None:
        lines = (folder / "index.m3u8").read_text().splitlines()
        self.segments = [
            (float(line.split(":")[1].rstrip(",")), lines[n + 1])
            for n, line in enumerate(lines)
            if line.startswith("#EXTINF:")
        ]
        self.target = max(round(d + 0.49) for d, _ in self.segments)
        self.ahead, self.started = ahead, time.monotonic()
        owner = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/live.m3u8"):
                    body = owner.playlist().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.apple.mpegurl")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_GET()

        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def playlist(self) -> str:
        elapsed, shown, count = time.monotonic() - self.started, 0.0, self.ahead
        for duration, _ in self.segments[self.ahead :]:
            shown += duration
            if shown > elapsed:
                break
            count += 1
        first = max(0, count - 5)
        text = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{self.target}",
                f"#EXT-X-MEDIA-SEQUENCE:{first}"]  # fmt: skip
        for duration, name in self.segments[first:count]:
            text += [f"#EXTINF:{duration:.6f},", name]
        return "\n".join(text) + "\n"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def alive(pid: int) -> bool:
    """Whether process `pid` still exists (a zombie not yet reaped counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
