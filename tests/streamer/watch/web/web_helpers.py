"""Helpers for the web viewer tests: run a real pipeline with a viewer, check it while it
serves, and speak raw HTTP where a client library would tidy the request up."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from streamer import run_pipeline
from streamer.core.events import Observer
from streamer.watch.web import WebViewer


class AtEnd(Observer):
    """Runs `check(viewer)` once every stream is done but before the viewer stops (it is
    listed before the viewer, and observers stop in order)."""

    def __init__(self, viewer: WebViewer, check: Callable[[WebViewer], Awaitable[Any]]) -> None:
        self.viewer = viewer
        self.check = check
        self.result: Any = None
        self.error: BaseException | None = None

    async def stop(self) -> None:
        try:
            self.result = await self.check(self.viewer)
        except BaseException as exc:  # re-raised by `run_and_check`, outside the observer
            self.error = exc


async def run_and_check(
    config, encoder, viewer: WebViewer, check, after: tuple[Observer, ...] = ()
) -> tuple[Any, Any]:
    """Run the pipeline with `viewer`; `check(viewer)` runs at the end, its asserts count.
    `after` are observers started after the viewer (it serves by then)."""
    probe = AtEnd(viewer, check)
    summary = await run_pipeline(config, encoder=encoder, observers=[probe, viewer, *after])
    if probe.error is not None:
        raise probe.error
    return summary, probe.result


async def wait_for_url(viewer: WebViewer, timeout: float = 60.0) -> str:
    async with asyncio.timeout(timeout):
        while viewer.url is None:
            await asyncio.sleep(0.02)
    return viewer.url


def port_of(viewer: WebViewer) -> int:
    assert viewer.url is not None
    return int(viewer.url.rstrip("/").rsplit(":", 1)[1])


async def raw_request(
    port: int, head: str, body: bytes = b"", host: str = "127.0.0.1"
) -> tuple[int, bytes]:
    """Send `head` (request line and headers, no blank line) verbatim; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        end = f"\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        writer.write(head.encode() + end + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


async def stalled_client(port: int, target: str) -> socket.socket:
    """A client that sends one GET and then never reads (a tiny receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    await asyncio.get_running_loop().sock_sendall(sock, request)
    return sock
