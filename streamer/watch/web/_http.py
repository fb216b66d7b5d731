"""What every page of the web viewer stands on: the guard, the security headers, listening.

The live viewer (`server.WebViewer`) and the archive's search page (`archive_routes`, also
served alone by `streamer serve --archive`) share these, so one token rule holds everywhere:

- with a token, every route needs `Authorization: Bearer TOKEN` or `?token=TOKEN` (pages pass
  theirs along: `<img>`, `<video>` and `EventSource` cannot send headers);
- without one, a server on this machine only answers names of this machine (no DNS rebinding);
- no route takes a body, but the few a caller names (the stream API's changes, bounded);
- without a token, a browser's change from a page of another site is refused (its `Origin`
  names another server): a page the user opens could otherwise POST to a viewer on this
  machine (a WebRTC offer). With a token that page lacks it; behind a proxy that does not pass
  the Host on, the viewer's own pages then still send theirs.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from aiohttp import web

from streamer.errors import ConfigError
from streamer.watch.web.options import ServeConfig, cannot_listen

__all__ = [
    "authorized",
    "guarded_app",
    "json_response",
    "listen",
    "loopback",
    "page_for",
    "unless_gone",
]

log = logging.getLogger("streamer.watch.web")

T = TypeVar("T")

#: How often a streaming response waiting for something to send checks its client is there.
GONE_CHECK_S = 1.0

#: A connection that has not sent a whole request this long after it opened, or after its last
#: answer, is closed. aiohttp's `AppRunner` waits an hour: a client that opens connections and
#: never finishes their headers (slowloris) held a file descriptor each, before any token is
#: checked, until the run could open no file or camera (aiohttp 3.14.4 and later time a connection
#: from its opening). A long answer (video, events) is never cut by it.
IDLE_TIMEOUT_S = 15.0

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's address may hold the token
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


# Open without the token: a health check (Docker, Kubernetes, a load balancer) cannot send
# one. What it answers tells nothing but counts of stream states.
OPEN_PATHS = frozenset({"/healthz"})


def guarded_app(
    config: ServeConfig,
    takes_body: Callable[[web.Request], bool] | None = None,
    body_limit: int = 1024,
) -> web.Application:
    """An empty application behind the guard (token, local names, no bodies), whose
    responses carry the security headers; the caller adds its routes.

    Args:
        config: the address and token.
        takes_body: the requests that may carry a body (None: none may).
        body_limit: the largest body those may carry, in bytes.
    """
    token = config.token
    # Without a token, a web page elsewhere that points its own name at 127.0.0.1 (DNS
    # rebinding) could read a machine-only viewer through the browser of someone on it.
    local_names_only = token is None and loopback(config.host)

    @web.middleware
    async def guard(request: web.Request, handler):
        if local_names_only and not loopback(request.url.host or ""):
            raise web.HTTPForbidden(
                text="403: this viewer listens on this machine only: open it as "
                "http://127.0.0.1:PORT/ or http://localhost:PORT/; behind a proxy or under "
                "another name, set --serve-token"
            )
        if token is None and _cross_site(request):  # a token is what a foreign page lacks
            raise web.HTTPForbidden(
                text=f"403: a page of {request.headers['Origin']} may not change this viewer "
                "(only its own pages may, and tools that send no Origin)"
            )
        if token is not None and request.path not in OPEN_PATHS and not authorized(request, token):
            message = ("401: this viewer needs its token: open it as /?token=TOKEN or send "
                       "'Authorization: Bearer TOKEN'")  # fmt: skip
            challenge = {"WWW-Authenticate": 'Bearer realm="streamer"'}
            api = request.path.startswith("/api/")  # its callers read JSON, reads or changes
            if api or (takes_body is not None and takes_body(request)):
                body = json.dumps({"error": message})
                raise web.HTTPUnauthorized(
                    text=body, content_type="application/json", headers=challenge
                )
            raise web.HTTPUnauthorized(text=message, headers=challenge)
        has_body = request.content_length or "Transfer-Encoding" in request.headers
        if has_body and (takes_body is None or not takes_body(request)):
            raise web.HTTPRequestEntityTooLarge(max_size=0, actual_size=request.content_length)
        return await handler(request)

    async def secure(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)

    app = web.Application(middlewares=[guard], client_max_size=body_limit)
    app.on_response_prepare.append(secure)
    return app


async def listen(app: web.Application, config: ServeConfig) -> tuple[web.AppRunner, str]:
    """Serve `app` at the configured address.

    Returns:
        The runner (`cleanup()` stops it) and the page's URL, with the port bound.

    Raises:
        ConfigError: the address cannot be listened on (a port in use, an unknown host).
    """
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=2.0, keepalive_timeout=IDLE_TIMEOUT_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(cannot_listen(config, exc)) from exc
    host, port = runner.addresses[0][:2]
    url = f"http://{_url_host(host)}:{port}/"
    log.info("web viewer: %s%s", url, " (token required)" if config.token else "")
    if not config.token and not loopback(config.host):
        log.warning(
            "web viewer listens on %s without a token: anyone who can reach it "
            "sees the video; set --serve-token",
            config.host,
        )
    return runner, url


async def unless_gone(request: web.Request, waiting: Awaitable[T]) -> T | None:
    """`waiting`'s result, or None once the client has disconnected (checked every
    `GONE_CHECK_S`; `waiting` is then cancelled).

    aiohttp does not cancel a handler whose client went away: a streaming response notices
    only when it next writes. One that waits for a frame that never comes (its stream ended,
    its camera offline) would hold the client's place for good.
    """
    task = asyncio.ensure_future(waiting)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=GONE_CHECK_S)
            if done:
                return task.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                return None
    finally:
        task.cancel()


def page_for(request: web.Request, page: bytes, token_required: bool) -> web.Response:
    """An HTML page whose `{{query}}` placeholders (its own static links) carry the token
    when the page was opened with one."""
    token = request.query.get("token") if token_required else None
    query = f"?token={quote(token, safe='')}" if token else ""
    body = page.replace(b"{{query}}", query.encode("ascii"))
    return web.Response(body=body, content_type="text/html", charset="utf-8")


def json_response(data: dict[str, Any], status: int = 200) -> web.Response:
    """`data` as JSON, never cached (it is the state of a run or an archive). A float that
    JSON cannot hold (NaN, infinity: a latency of a stream that never delivered a frame) is
    written as null."""
    body = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return web.Response(
        text=body,
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def authorized(request: web.Request, token: str) -> bool:
    """Whether the request carries `token` (a Bearer header or `?token=`), compared in
    constant time."""
    expected = token.encode()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected):
        return True
    given = request.query.get("token")
    return given is not None and hmac.compare_digest(given.encode(), expected)


def _cross_site(request: web.Request) -> bool:
    """A request that may change something (not GET, HEAD or OPTIONS), sent by a browser from
    a page of another server: its `Origin` (browsers send one with every such request) is not
    this server's address. Without this, a web page the user opens could POST to a viewer on
    127.0.0.1 (a plain `fetch` with mode "no-cors" needs no CORS) and fill its WebRTC places."""
    origin = request.headers.get("Origin")
    if origin is None or request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    return urlsplit(origin).netloc.lower() != (request.host or "").lower()


def loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (in dicts, lists and tuples) made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
