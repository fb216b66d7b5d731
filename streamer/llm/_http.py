"""The one place that talks HTTP: requests on the injected session, transport errors classified.

Response bodies are read whole and decoded leniently (bytes that are not UTF-8 become U+FFFD),
then parsed as JSON; whether that JSON is an error is decided by `classify`, never by the status
alone (docs/llm-protocol.md §3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from streamer.errors import LlmConfigError, LlmTimeoutError, LlmUnavailableError
from streamer.llm.classify import classify, error_body
from streamer.llm.config import LlmConfig

# Metadata routes answer at once on a healthy server; a slow one is not worth waiting for.
METADATA_TIMEOUT_S = 5.0

_UNREACHABLE_FIX = (
    "is LM Studio running? start its server: `lms server start` (or the app's Developer page), "
    "or give the URL of the server you use"
)


@dataclass(frozen=True)
class Reply:
    """A response read whole: status, decoded JSON (None if not JSON) and the text."""

    status: int
    body: Any
    text: str


class Http:
    """Requests to one server through the caller's session.

    Args:
        session: the aiohttp session (the caller owns and closes it).
        config: gives the base URL, the API key and the connect timeout.
    """

    def __init__(self, session: aiohttp.ClientSession, config: LlmConfig) -> None:
        self.session = session
        self.config = config
        self.base = config.url
        # LM Studio's REST API, llama.cpp's /props and Ollama's /api/* sit beside /v1.
        self.root = self.base.removesuffix("/v1")
        self.headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}

    async def send(
        self,
        method: str,
        url: str,
        *,
        read_timeout: float,
        payload: object = None,
        data: bytes | None = None,
    ) -> Reply:
        """One request with a JSON body (`payload`, or `data` already serialised); raises
        LlmUnavailableError/LlmTimeoutError when no response came."""
        timeout = aiohttp.ClientTimeout(
            total=self.config.connect_timeout + read_timeout,
            sock_connect=self.config.connect_timeout,
            sock_read=read_timeout,
        )
        where = f"{method} {url}"
        headers = self.headers
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        try:
            async with self.session.request(
                method, url, json=payload, data=data, headers=headers, timeout=timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError as exc:
            raise LlmTimeoutError(
                f"{where}: no answer within {read_timeout:g} s", kind="timeout", reason="timed out"
            ) from exc
        except aiohttp.ClientSSLError as exc:  # before its base class, ClientConnectorError
            plain = "wrong version number" in str(exc).lower()
            fix = ("the server speaks plain HTTP: write its URL with http://" if plain else
                   "the server's TLS certificate is not trusted here, or write its URL with "
                   "http:// if it speaks plain HTTP")  # fmt: skip
            raise LlmConfigError(
                f"cannot reach the LLM server at {self.base} over TLS: {exc} (fix: {fix})",
                kind="wrong_url",
                reason="TLS failed",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise LlmUnavailableError(
                f"cannot reach the LLM server at {self.base}: {exc.os_error.strerror or exc} "
                f"(fix: {_UNREACHABLE_FIX})",
                kind="unreachable",
                reason="unreachable",
            ) from exc
        except aiohttp.ClientError as exc:
            raise LlmUnavailableError(
                f"{where}: the connection broke before the answer was complete: "
                f"{type(exc).__name__}: {exc}",
                kind="dropped",
                reason="connection dropped",
            ) from exc
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return Reply(status, body, text)

    async def get_checked(self, path: str) -> Any:
        """GET `base + path` and return its JSON; any error in status or body is raised."""
        url = self.base + path
        reply = await self.send("GET", url, read_timeout=METADATA_TIMEOUT_S)
        check(reply, f"GET {url}")
        return reply.body

    async def try_json(self, url: str, payload: object = None) -> Any:
        """The JSON of a metadata route that may not exist here; None on any failure.

        Server detection asks routes that only some servers have; a missing route, an error
        body, a non-JSON answer or a dropped connection all just mean "not this kind".
        """
        method = "GET" if payload is None else "POST"
        try:
            reply = await self.send(method, url, read_timeout=METADATA_TIMEOUT_S, payload=payload)
        except LlmUnavailableError:
            return None
        if not 200 <= reply.status < 300 or error_body(reply.body) is not None:
            return None
        return reply.body


def check(reply: Reply, where: str) -> None:
    """Raise the classified error when a reply carries one, in its status or its body."""
    error = error_body(reply.body)
    if error is not None or not 200 <= reply.status < 300:
        raise classify(reply.status, error, where=where)
    if reply.body is None:
        raise _not_json(reply, where)


def _not_json(reply: Reply, where: str) -> LlmUnavailableError | LlmConfigError:
    snippet = " ".join(reply.text.split())[:120]
    if snippet.lower().startswith(("<!doctype", "<html")):
        # A web page, not an API: the URL points at some other server.
        return LlmConfigError(
            f"{where} answered with a web page, not JSON: {snippet!r} (fix: give the "
            "OpenAI-compatible base URL, ending in /v1, e.g. http://localhost:1234/v1)",
            kind="wrong_url",
            status=reply.status,
            reason="wrong URL",
        )
    return LlmUnavailableError(
        f"{where} answered HTTP {reply.status} with a body that is not JSON: {snippet!r}",
        kind="bad_response",
        status=reply.status,
        reason="bad response",
    )
