"""A small headless-Chromium driver over the DevTools protocol (aiohttp's websocket client).

Enough to test a page the way a user sees it: open a tab, go to a URL, evaluate JavaScript
(polling until a condition holds) and take a screenshot. Debian's `chromium` package is the
browser; nothing is downloaded.

Example:
    >>> async with Chromium.launch() as browser:  # doctest: +SKIP
    ...     page = await browser.new_page()
    ...     await page.goto("http://127.0.0.1:8080/")
    ...     await page.wait_for("document.title === 'streamer'")
    ...     png = await page.screenshot()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless=new",
    "--remote-debugging-port=0",
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
    # WebRTC host candidates as addresses, not mDNS `.local` names (which the server's ICE
    # would have to resolve over multicast): a test's connection on this machine is direct.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)


class BrowserError(RuntimeError):
    """Chromium did not start, or a DevTools command failed."""


def chromium_path() -> str | None:
    """The Chromium executable on PATH, None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless Chromium process and its DevTools connection."""

    def __init__(self, process: asyncio.subprocess.Process, profile: Path) -> None:
        self.process = process
        self.profile = profile
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._pages: dict[str, Page] = {}
        self._reader: asyncio.Task | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(
        cls, width: int = 1280, height: int = 800, timeout: float = 30.0
    ) -> AsyncIterator[Chromium]:
        """Start Chromium with a throwaway profile; it is closed (and killed if need be) after."""
        executable = chromium_path()
        if executable is None:
            raise BrowserError("chromium is not installed (Debian: apt-get install chromium)")
        with tempfile.TemporaryDirectory(prefix="chromium-") as folder:
            profile = Path(folder)
            log = (profile / "chromium.log").open("wb")
            process = await asyncio.create_subprocess_exec(
                executable, *FLAGS, f"--user-data-dir={profile / 'profile'}",
                f"--window-size={width},{height}", "about:blank",
                stdout=log, stderr=log,
            )  # fmt: skip
            browser = cls(process, profile)
            try:
                await browser._connect(timeout)
                yield browser
            finally:
                await browser._close()
                log.close()

    async def new_page(self, new_window: bool = False) -> Page:
        """A new tab, attached (flat sessions: one websocket carries every tab). Only the
        newest tab of a window is visible (`document.hidden` in the others): pages that must
        all play video at once each take a `new_window`."""
        params = {"url": "about:blank", "newWindow": new_window}
        target = await self.send("Target.createTarget", params)
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        self._pages[page.session] = page
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        return page

    async def send(
        self, method: str, params: dict | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send one DevTools command and await its result."""
        if self._ws is None or self._ws.closed:
            raise BrowserError(f"{method}: the DevTools connection is closed{self._log_tail()}")
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result", {})

    async def _connect(self, timeout: float) -> None:
        port_file = self.profile / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port{self._log_tail()}")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._session = aiohttp.ClientSession()
        # Screenshots arrive as one large message: no size limit.
        self._ws = await self._session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" not in data:
                self._event(data)
                continue
            future = self._pending.pop(data["id"], None)
            if future is not None and not future.done():
                future.set_result(data)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrowserError("chromium closed the DevTools connection"))
        self._pending.clear()

    def _event(self, data: dict[str, Any]) -> None:
        page = self._pages.get(data.get("sessionId", ""))
        if page is not None and data.get("method") == "Runtime.exceptionThrown":
            details = data["params"]["exceptionDetails"]
            page.errors.append(details.get("exception", {}).get("description") or details["text"])

    async def _close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(BrowserError, TimeoutError, ConnectionError):
                await asyncio.wait_for(self.send("Browser.close"), 5)
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def _log_tail(self) -> str:
        log = self.profile / "chromium.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        return f"; chromium said:\n{tail}" if tail else ""


class Page:
    """One tab. `errors` collects the page's uncaught JavaScript exceptions."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self.errors: list[str] = []

    async def send(self, method: str, params: dict | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait until the document has loaded."""
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        await self.wait_for("document.readyState === 'complete'", timeout, f"{url} loaded")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} threw: {text}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0, what: str = "") -> Any:
        """Poll `expression` until it is truthy; its value. AssertionError after `timeout`.

        The value comes back as JSON: test a DOM node with `!!node`, not the node itself.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what or expression}")
            await asyncio.sleep(0.1)

    async def screenshot(self) -> bytes:
        """A PNG of the visible page."""
        result = await self.send("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(result["data"])
