"""The web viewer: an aiohttp server beside the pipeline, told what happens as an `Observer`.

Routes (a fixed table: no route but the clips' reads a file path from the request; static
files are the package's own, read once with importlib.resources)::

    /                           the page: every stream's video, caption, tags, status, history
    /static/app.js, style.css   the page's script and style
    /streams/{name}/mjpeg       the stream's overlaid video (multipart MJPEG)
    /streams/{name}/snapshot.jpg  one current frame
    /api/webrtc/{name}          the stream over WebRTC: the page's offer, the answer (`webrtc`)
    /events                     Server-Sent Events: status (every second), caption, alert,
                                alert_cleared, summary, archive
    /api/status                 the run as JSON
    /api/captions, /api/alerts  history as JSON (?stream=NAME, ?after=ID)
    /api/streams[/{name}]       list, add, change and remove streams while the run runs
                                (`stream_api`; changes need the token), /api/openapi.json
    /api/reload                 POST: re-read the run's --config file (`reload_api`)
    /healthz                    200 while the run is up: "ok", or "degraded" with a stream
                                offline or failed (open without the token)
    /metrics                    Prometheus text (`streamer.watch.web.metrics`)
    /search, /api/search, /archive/...  with an archive: its search page (`archive_routes`)
    /archive/clips/{stream}/{file}  an alert's clip, with --archive (`_clips`, checked)

With a token set, every route but /healthz needs `Authorization: Bearer TOKEN` or
`?token=TOKEN` (the page passes its own along, as `<img>` and `EventSource` cannot send
headers). No route takes a
body but the stream API's changes (`streamer.watch.web._http`: the guard every page shares).
Clients cannot hold the pipeline up: frames are encoded once per stream at a bounded rate on
a low-priority thread, each client gets the newest one when it is ready for it, event queues
are bounded, and a client whose write stalls past `write_timeout_s` is disconnected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.resources
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from streamer.core.events import Observer
from streamer.core.frame import Caption
from streamer.errors import ConfigError
from streamer.watch.web._clips import CLIP_ROUTE, archive_dir_of, clip_handler
from streamer.watch.web._events import EventHub, sse_message
from streamer.watch.web._frames import BOUNDARY, FrameHub
from streamer.watch.web._http import guarded_app, json_response, listen, page_for, unless_gone
from streamer.watch.web._rtc_media import stamp_clock
from streamer.watch.web._status import Rates, archive_status, health, run_status, stream_state
from streamer.watch.web.metrics import CONTENT_TYPE, WebNumbers, metrics_registry
from streamer.watch.web.options import ServeConfig
from streamer.watch.web.stream_api import BODY_LIMIT, StreamRoutes, requests_body
from streamer.watch.web.webrtc import RtcLimits, WebRtc

__all__ = ["ViewerLimits", "WebViewer"]

log = logging.getLogger("streamer.watch.web")

_STATIC = {"app.js": "text/javascript", "rtc.js": "text/javascript", "style.css": "text/css"}


@dataclass(frozen=True, slots=True)
class ViewerLimits:
    """How much the viewer may do and hold.

    Attributes:
        max_fps: preview frames encoded per second per stream, at most.
        jpeg_quality: JPEG quality of the previews (1..100).
        long_edge: previews are scaled down to this many pixels on their long side.
        write_timeout_s: a client whose socket takes no data for this long is disconnected.
        max_clients: streaming connections (video and events) open at once; more get 503.
        history: captions and alerts kept per stream (page history, `/api/captions`).
        queue_events: events a client may be behind before it is disconnected.
        status_every_s: seconds between status events on the page.
    """

    max_fps: float = 10.0
    jpeg_quality: int = 75
    long_edge: int = 1280
    write_timeout_s: float = 5.0
    max_clients: int = 32
    history: int = 200
    queue_events: int = 64
    status_every_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_fps", "write_timeout_s", "status_every_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"viewer {name} must be > 0, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"viewer jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        for name in ("long_edge", "max_clients", "history", "queue_events"):
            if getattr(self, name) < 1:
                raise ConfigError(f"viewer {name} must be ≥ 1, got {getattr(self, name)}")


class WebViewer(Observer):
    """Serves a running pipeline to browsers and tools; started and stopped with the run.

    Args:
        config: where to listen and the optional token.
        limits: rates, sizes and timeouts.
        archive: the run's archive directory (`--archive`): its search page is served too
            (`/search`, `streamer.watch.web.archive_routes`).
        llm: the run's LLM (`LlmConfig`), which the search page's questions go to.
        webrtc: how the WebRTC video is made (offered when aiortc is installed); by default
            `RtcLimits()` with the clock stamp as `config.webrtc_stamp` says.

    Attributes:
        url: the page's address once started (with the port bound, for `port=0`), else None.

    Example:
        >>> viewer = WebViewer(ServeConfig(port=0))  # doctest: +SKIP
        >>> await run_pipeline(config, observers=[viewer])  # doctest: +SKIP
    """

    def __init__(
        self,
        config: ServeConfig,
        limits: ViewerLimits | None = None,
        *,
        archive: str | os.PathLike[str] | None = None,
        llm: Any = None,
        webrtc: RtcLimits | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or ViewerLimits()
        self.archive = archive
        self.llm = llm
        self.url: str | None = None
        self.run: Any = None
        self._streams: dict[str, Any] = {}
        self._frames: FrameHub | None = None
        webrtc = webrtc or RtcLimits(stamp_clock=config.webrtc_stamp)
        self._rtc = WebRtc(webrtc, lambda: self._streams)
        self._events = EventHub(self.limits.history, self.limits.queue_events)
        self._rates = Rates()
        self._clients = {"mjpeg": 0, "events": 0}
        self._disconnects: collections.Counter[str] = collections.Counter()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task | None = None
        self._page = b""
        self._run_id = secrets.token_hex(6)
        self._static: dict[str, bytes] = {}
        self._registry: CollectorRegistry | None = None  # /metrics: made for the run

    # -- observer hooks ------------------------------------------------------------------------

    @property
    def wants_frames(self) -> bool:
        return (self._frames is not None and self._frames.watched) or self._rtc.watched

    async def start(self, run: Any) -> None:
        self.run = run
        self._streams = {stream.name: stream for stream in run.streams}
        limits = self.limits
        self._frames = FrameHub(
            list(self._streams), limits.max_fps, limits.jpeg_quality, limits.long_edge
        )
        self._load_static()
        self._rates.read(run.streams)
        self._registry = metrics_registry(run, self._web_numbers)
        self._registry.register(self._rtc)
        try:
            self._runner, self.url = await listen(_app(self), self.config)
        except ConfigError:
            await self._frames.close()
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="web-status")

    def frame(self, stream: str, image: np.ndarray, timeline: float) -> None:
        if self._rtc.limits.stamp_clock:  # the page reads it back; on a copy: the files the
            image = image.copy()  # run writes (and the other observers) never get it
            stamp_clock(image)
        if self._frames is not None:
            self._frames.store(stream, image)
        self._rtc.store(stream, image)

    def caption(self, stream: str, caption: Caption) -> None:
        self._events.caption(caption)

    def alert(self, stream: str, alert: Any) -> None:
        self._events.alert(stream, alert)

    def alert_cleared(self, stream: str, cleared: Any) -> None:
        self._events.alert_cleared(stream, cleared)

    def summary(self, stream: str, summary: Any) -> None:
        self._events.summary(stream, summary)

    def stream_added(self, stream: Any) -> None:
        self._streams[stream.name] = stream
        if self._frames is not None:
            self._frames.add(stream.name)
        # The pages make its card now: its first caption may come before the next status.
        self._events.publish(sse_message("status", self.status()))

    def stream_removed(self, stream: Any) -> None:
        if self._streams.get(stream.name) is stream:
            del self._streams[stream.name]
            self._rates.forget(stream.name)
            if self._frames is not None:
                self._frames.remove(stream.name)
            self._rtc.remove(stream.name)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        # The pages' last word: the run is over (not the connection: they would retry).
        self._events.close(sse_message("status", {**self.status(), "ended": True}))
        await self._rtc.close()
        if self._frames is not None:
            await self._frames.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- state ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The run as `/api/status` shows it; a new `run_id` (event ids restart) reloads pages."""
        status = run_status(self.run, self._rates, self._clients)
        return {"run_id": self._run_id, **status, "webrtc": self._rtc.status()}

    def metrics(self) -> str:
        """The Prometheus exposition `/metrics` serves (once started)."""
        assert self._registry is not None, "start() makes the registry"
        return generate_latest(self._registry).decode()

    def _web_numbers(self) -> WebNumbers:
        disconnects = dict(self._disconnects)
        disconnects["overflow"] = disconnects.get("overflow", 0) + self._events.overflows
        return {"clients": self._clients, "disconnects": disconnects}

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.limits.status_every_s)
            self._rates.read(self.run.streams)
            self._events.archive(archive_status(self.run))  # an event when it stops writing
            if self._events.clients:
                self._events.publish(sse_message("status", self.status()))

    def _load_static(self) -> None:
        folder = importlib.resources.files("streamer.watch.web") / "static"
        self._page = (folder / "index.html").read_bytes()
        self._static = {name: (folder / name).read_bytes() for name in _STATIC}

    # -- routes --------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return page_for(request, self._page, self.config.token is not None)

    def static(self, name: str):
        """The handler of one of the page's static files (a route per file, no path lookup)."""

        async def serve(request: web.Request) -> web.Response:
            return web.Response(
                body=self._static[name], content_type=_STATIC[name], charset="utf-8"
            )

        return serve

    async def mjpeg(self, request: web.Request) -> web.StreamResponse:
        slot = self._slot(request)
        if not self._admit("mjpeg"):
            return _too_many()
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-store",
            }
        )
        slot.watch()
        try:
            await response.prepare(request)
            version = 0
            while (jpeg := await unless_gone(request, slot.next_jpeg(version))) is not None:
                version = jpeg.version
                if not await self._send(request, response, jpeg.part):
                    break
            else:  # the viewer stops: the closing boundary (a browser keeps the last frame)
                if slot.closed:
                    await self._send(request, response, f"--{BOUNDARY}--\r\n".encode())
        finally:
            slot.unwatch()
            self._clients["mjpeg"] -= 1
        return response

    async def snapshot(self, request: web.Request) -> web.Response:
        slot = self._slot(request)
        state = stream_state(self._streams[slot.name])
        # A stream that has ended draws no new frame: its last preview, if anyone watched.
        jpeg = slot.jpeg if state in ("ended", "failed") else await slot.fresh_jpeg(timeout=5.0)
        if jpeg is None:
            raise web.HTTPServiceUnavailable(
                text=f"stream {slot.name!r} has no frame to show (it is {state}); "
                "a snapshot needs a stream that is drawing frames",
                headers={"Retry-After": "1"},
            )
        return web.Response(
            body=jpeg.jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"}
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        after = _int_param(request.headers.get("Last-Event-ID") or request.query.get("after"))
        if not self._admit("events"):
            return _too_many()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a proxy in front must pass events on at once
            }
        )
        try:
            await response.prepare(request)
            # Subscribe and take the replay with no await between: nothing missed, nothing twice.
            client = self._events.subscribe()
            try:
                first = b"retry: 2000\n\n" + sse_message("status", self.status())
                ok = await self._send(request, response, first + self._events.replay(after))
                while (
                    ok and (message := await unless_gone(request, client.queue.get())) is not None
                ):
                    ok = await self._send(request, response, message)
            finally:
                self._events.unsubscribe(client)
        finally:
            self._clients["events"] -= 1
        return response

    async def api_status(self, request: web.Request) -> web.Response:
        return json_response(self.status())

    async def api_captions(self, request: web.Request) -> web.Response:
        return self._records(request, "caption")

    async def api_alerts(self, request: web.Request) -> web.Response:
        return self._records(request, "alert")

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response(health(stream_state(s) for s in self._streams.values()))

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics().encode(), headers={"Content-Type": CONTENT_TYPE})

    # -- helpers -------------------------------------------------------------------------------

    def _slot(self, request: web.Request):
        name = request.match_info["name"]
        if self._frames is None or name not in self._frames.slots:
            raise web.HTTPNotFound(text=f"no stream named {name!r}; /api/status lists them")
        return self._frames.slots[name]

    def _records(self, request: web.Request, kind: str) -> web.Response:
        stream = request.query.get("stream")
        if stream is not None and stream not in self._streams:
            raise web.HTTPNotFound(text=f"no stream named {stream!r}; /api/status lists them")
        after = _int_param(request.query.get("after"))
        return json_response({f"{kind}s": self._events.records(kind, stream, after)})

    def _admit(self, kind: str) -> bool:
        if sum(self._clients.values()) >= self.limits.max_clients:
            self._disconnects["full"] += 1
            return False
        self._clients[kind] += 1
        return True

    async def _send(self, request: web.Request, response: web.StreamResponse, data: bytes) -> bool:
        """Write to a streaming client; False when it is gone or was cut off for stalling."""
        try:
            await asyncio.wait_for(response.write(data), self.limits.write_timeout_s)
        except TimeoutError:
            self._disconnects["stalled"] += 1
            if request.transport is not None:
                request.transport.abort()  # drops what is buffered for it
            return False
        except ConnectionError:
            return False
        return True


def _app(viewer: WebViewer) -> web.Application:
    rtc = viewer._rtc
    takes_body = lambda r: requests_body(r) or rtc.takes_body(r)  # noqa: E731
    app = guarded_app(viewer.config, takes_body, BODY_LIMIT)
    app.router.add_get("/", viewer.index)
    for name in _STATIC:
        app.router.add_get(f"/static/{name}", viewer.static(name))
    app.router.add_get("/streams/{name}/mjpeg", viewer.mjpeg, allow_head=False)
    app.router.add_get("/streams/{name}/snapshot.jpg", viewer.snapshot)
    rtc.add_to(app)
    app.router.add_get("/events", viewer.events, allow_head=False)
    app.router.add_get("/api/status", viewer.api_status)
    app.router.add_get("/api/captions", viewer.api_captions)
    app.router.add_get("/api/alerts", viewer.api_alerts)
    app.router.add_get("/healthz", viewer.healthz)
    app.router.add_get("/metrics", viewer.prometheus)
    app.router.add_get(CLIP_ROUTE, clip_handler(lambda: archive_dir_of(viewer.run)))
    control = lambda: getattr(viewer.run, "control", None)  # noqa: E731 (read per request)
    reloader = lambda: getattr(viewer.run, "reloader", None)  # noqa: E731
    StreamRoutes(control, viewer.config.token is not None, reloader).add_to(app)
    if viewer.archive is not None:  # imported here: the archive's code loads only when used
        from streamer.watch.web.archive_routes import ArchiveRoutes

        ArchiveRoutes.of_run(viewer.archive, viewer.config, viewer.run, viewer.llm).add_to(app)
    else:  # a bare 404 told nothing of why there is no search here
        for path in ("/search", "/api/search", "/api/ask"):
            app.router.add_get(path, _no_archive)
    return app


async def _no_archive(request: web.Request) -> web.Response:
    message = ("404: this run keeps no archive, so there is nothing to search: run with "
               "--archive DIR, or serve one with `streamer serve --archive DIR`")  # fmt: skip
    if request.path.startswith("/api/"):
        return json_response({"error": message}, status=404)
    raise web.HTTPNotFound(text=message)


def _int_param(value: str | None) -> int:
    if value is None or value == "":
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"'after' must be an event id (an integer), got {value!r}"
        ) from None


def _too_many() -> web.Response:
    return web.Response(
        status=503,
        text="503: too many viewers are connected; try again later",
        headers={"Retry-After": "5"},
    )
