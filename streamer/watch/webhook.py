"""The alert webhook: every alert POSTed as JSON, with a JPEG snapshot, and every alert that
clears, without ever holding up the video.

`WebhookSender.alert` and `.alert_cleared` (called on the event loop) only append to a bounded
queue and return;
one task started in `start` sends what is queued, one alert at a time, in order. The JSON body
(with the snapshot's JPEG, which costs milliseconds) is built on the low-priority background
thread (`streamer.core.background`), so it takes no core from decode and drawing.

Delivery::

    2xx                           delivered
    connection error, timeout,    retried: exponential backoff with jitter (`Backoff`), at most
    5xx, 429                      `retry.max_attempts` tries (a 429's Retry-After is honoured,
                                  up to `retry.cap`)
    any other status (4xx)        refused: not retried (the same body would be refused again);
                                  logged once, then counted

A receiver that is down costs the run nothing but log lines: when the queue fills, the oldest
alert is dropped (counted; warned once per burst), and `stop` waits at most `flush_s` for the
queue to empty, then says how many alerts were not delivered.

The body::

    {"type": "alert", "stream": "door", "time": 12.5, "wall": 1718000000.123, "frame": 312,
     "query": "a person at the door", "score": 0.3121, "threshold": 0.27,
     "caption": "a man in a coat ...", "snapshot_jpeg_base64": "/9j/4AAQ...",
     "clip": "clips/door/20250101T120000.123Z-a-person-at-the-door.mp4"}

`time` is media time for files and seconds since the stream's first frame for live streams;
`wall` is Unix time when it was detected; `snapshot_jpeg_base64` is the analysed frame without
overlay, long edge at most 1024 px (null when there is no image); `clip`, with `--archive`, is
where the alert's clip will be, relative to the archive directory (null without): it is cut once the
stream is recorded `--clip-after` past the alert, so it may not exist yet when this arrives.

An alert that clears (its scene stopped matching, or its stream stopped delivering frames:
`streamer.analysis.alerts.AlertCleared`) is POSTed in the same shape, in order after the
alert, with `"type": "alert_cleared"` (what tells the two apart), the frame and score that
cleared it (`score` null when its stream stopped delivering frames), no snapshot, caption or
clip, and two more fields: `fired`, when it last fired (the same timeline as `time`), and
`reason` ("no match", "offline", "ended", "stopped" or "removed": `AlertCleared`)::

    {"type": "alert_cleared", "stream": "door", "time": 20.0, "wall": 1718000007.6,
     "frame": 500, "query": "a person at the door", "score": 0.1903, "threshold": 0.27,
     "caption": null, "snapshot_jpeg_base64": null, "clip": null, "fired": 12.5,
     "reason": "no match"}
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from streamer.analysis.alerts import Alert, AlertCleared
from streamer.core.background import run_in_background
from streamer.core.events import Observer
from streamer.core.retry import Backoff, RetryPolicy
from streamer.errors import ConfigError
from streamer.llm.images import encode_jpeg

if TYPE_CHECKING:  # loaded by `start`: the configuration checks URLs without it
    import aiohttp

__all__ = ["DEFAULT_RETRY", "WebhookPolicy", "WebhookSender", "check_webhook_url", "webhook_body"]

log = logging.getLogger("streamer.watch.webhook")

_HEADERS = {"Content-Type": "application/json"}
_OK, _RETRY, _REFUSED = "ok", "retry", "refused"
DEFAULT_RETRY = RetryPolicy(initial=0.5, cap=8.0, jitter=0.5, max_attempts=5)
"""The webhook's default retries: 0.5 s doubling to 8 s, half of each delay random, 5 tries."""


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    """How hard the webhook tries.

    Attributes:
        queue: alerts waiting to be sent; beyond it the oldest is dropped (counted). Each
            holds its frame until sent (6 MB at 1080p), so the queue is short: with a cooldown
            per query and stream, 16 alerts waiting means the receiver is down, not slow.
        retry: the delays between tries (0.5 s doubling to 8 s, half of each random) and
            `max_attempts`, the tries per alert on retryable failures (the first included).
        timeout_s: seconds one POST may take, connect to last byte.
        flush_s: seconds `stop` waits for the queue to empty before giving up on the rest.
        snapshot_long_edge: the snapshot's long side is scaled down to at most this many pixels.
    """

    queue: int = 16
    retry: RetryPolicy = DEFAULT_RETRY
    timeout_s: float = 5.0
    flush_s: float = 5.0
    snapshot_long_edge: int = 1024

    def __post_init__(self) -> None:
        if self.queue < 1:
            raise ConfigError(f"webhook queue must be ≥ 1 alert, got {self.queue}")
        if not isinstance(self.retry, RetryPolicy) or self.retry.max_attempts is None:
            raise ConfigError(
                "webhook retry must be a RetryPolicy with a number of max_attempts (an alert is "
                f"not retried forever), got {self.retry!r}"
            )
        if not self.timeout_s > 0:
            raise ConfigError(f"webhook timeout must be > 0 s, got {self.timeout_s}")
        if not self.flush_s >= 0:
            raise ConfigError(f"webhook flush must be ≥ 0 s, got {self.flush_s}")
        if self.snapshot_long_edge < 16:
            raise ConfigError(
                f"webhook snapshot_long_edge must be ≥ 16 px, got {self.snapshot_long_edge}"
            )


def check_webhook_url(url: str, flag: str = "--webhook") -> None:
    """Raise ConfigError unless `url` is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{flag} must be an http:// or https:// URL with a host, got {_where(url)!r}; "
            "e.g. --webhook http://127.0.0.1:9000/alerts"
        )


def _where(url: str) -> str:
    """The receiver as logs show it: scheme, host and port only. Webhook URLs often carry their
    secret in the path or the query (Slack's, Discord's), so the rest is never logged."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "<not a URL>"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname}{port}{rest}"


def webhook_body(alert: Alert | AlertCleared, long_edge: int = 1024) -> bytes:
    """The JSON body for `alert`, snapshot included (blocking: JPEG encoding), or for an alert
    that cleared (no snapshot)."""
    snapshot = None
    cleared = isinstance(alert, AlertCleared)
    if not cleared and alert.image is not None:
        snapshot = base64.b64encode(encode_jpeg(alert.image, long_edge)).decode("ascii")
    body = {
        "type": "alert_cleared" if cleared else "alert",
        "stream": alert.stream,
        "time": round(alert.time, 3),
        "wall": round(alert.wall, 3),
        "frame": alert.frame_index,
        "query": alert.query,
        "score": round(alert.score, 4) if math.isfinite(alert.score) else None,
        "threshold": alert.threshold,
        "caption": None if cleared else alert.caption,
        "snapshot_jpeg_base64": snapshot,
        "clip": None if cleared else alert.clip,
    }
    if cleared:
        body |= {"fired": round(alert.fired, 3), "reason": alert.reason}
    return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")


class WebhookSender(Observer):
    """POSTs every alert of a run to `url`, and every alert that clears, in the background.

    Args:
        url: the receiver (http or https).
        policy: queue size, attempts, timeouts and backoff.
        session: an aiohttp session to use (the caller closes it); None makes one in `start`.
        random: jitter source, floats in [0, 1) (injectable so tests are exact).

    Attributes:
        delivered: alerts the receiver accepted (2xx).
        failed: alerts given up after `policy.retry.max_attempts` retryable failures.
        refused: alerts the receiver refused with a status that is not retried (4xx).
        dropped: alerts dropped from a full queue.
        abandoned: alerts still queued or in flight when `stop` gave up waiting.

    Example:
        >>> sender = WebhookSender("http://127.0.0.1:9000/alerts")
        >>> await run_pipeline(config, observers=[sender])  # doctest: +SKIP
        >>> sender.undelivered  # doctest: +SKIP
        0
    """

    def __init__(
        self,
        url: str,
        policy: WebhookPolicy | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        check_webhook_url(url)
        self.url = url
        self.policy = policy if policy is not None else WebhookPolicy()
        self.delivered = self.failed = self.refused = self.dropped = self.abandoned = 0
        self._session = session
        self._own_session = session is None
        self._random = random
        self._queue: collections.deque[Alert | AlertCleared] = collections.deque()
        self._in_flight: Alert | AlertCleared | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._drop_warned = False
        self._refusal_logged = False
        self._outage = 0  # failed attempts since the receiver last answered well

    @property
    def undelivered(self) -> int:
        """Alerts that did not reach the receiver, for whatever reason."""
        return self.failed + self.refused + self.dropped + self.abandoned

    async def start(self, run: Any) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._send_all(), name="webhook")

    def alert_cleared(self, stream: str, cleared: AlertCleared) -> None:
        """Queue the alert that cleared, after the alerts queued before it (event loop)."""
        self.alert(stream, cleared)

    def alert(self, stream: str, alert: Alert | AlertCleared) -> None:
        """Queue `alert` and return at once (event loop)."""
        if len(self._queue) >= self.policy.queue:
            self._queue.popleft()
            self.dropped += 1
            if not self._drop_warned:
                self._drop_warned = True  # again only after the queue has emptied
                log.warning(
                    "webhook: %d alerts queued for %s, which is slow or down: dropping the "
                    "oldest (counted in the summary)", self.policy.queue, _where(self.url),
                )  # fmt: skip
        self._queue.append(alert)
        self._idle.clear()
        self._wake.set()

    async def stop(self) -> None:
        """Wait up to `policy.flush_s` for the queue to empty, then stop and report."""
        try:
            if self._task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), self.policy.flush_s)
            # Counted before the cancel, which ends the request in flight.
            self.abandoned = len(self._queue) + (self._in_flight is not None)
            self._queue.clear()
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        finally:
            if self._own_session and self._session is not None:
                await self._session.close()
        self._report()

    def _report(self) -> None:
        where = _where(self.url)
        if not self.undelivered:
            if self.delivered:
                log.info("webhook: %d alerts delivered to %s", self.delivered, where)
            return
        total = self.delivered + self.undelivered
        log.warning(
            "webhook: %d of %d alerts not delivered to %s (%d failed after %d attempts, %d "
            "refused, %d dropped from a full queue, %d still queued when the run ended)",
            self.undelivered, total, where, self.failed, self.policy.retry.max_attempts,
            self.refused, self.dropped, self.abandoned,
        )  # fmt: skip

    async def _send_all(self) -> None:
        while True:
            if not self._queue:
                self._drop_warned = False
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._in_flight = alert = self._queue.popleft()
            try:
                await self._send(alert)
            except Exception:  # a bug in building the body: counted and shown, then go on
                self.failed += 1
                log.exception("webhook: cannot send the alert %r of %s", alert.query, alert.stream)
            finally:
                self._in_flight = None

    async def _send(self, alert: Alert | AlertCleared) -> None:
        body = await run_in_background(webhook_body, alert, self.policy.snapshot_long_edge)
        policy = self.policy
        backoff = Backoff(policy.retry, random=self._random)
        while True:
            outcome, detail, retry_after = await self._post(body)
            if outcome == _OK:
                self._delivered()
                return
            if outcome == _REFUSED:
                self._refused(detail)
                return
            self._retryable(detail)
            delay = backoff.next_delay()
            if delay is None:
                self.failed += 1
                log.debug("webhook: alert %r given up after %d attempts", alert.query,
                          policy.retry.max_attempts)  # fmt: skip
                return
            if retry_after is not None:
                delay = max(delay, min(retry_after, policy.retry.cap))
            await asyncio.sleep(delay)

    async def _post(self, body: bytes) -> tuple[str, str, float | None]:
        """One attempt: (outcome, what went wrong, the server's Retry-After in seconds)."""
        import aiohttp  # already loaded by `start`

        assert self._session is not None, "start() makes the session"
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
        try:
            async with self._session.post(
                self.url, data=body, headers=_HEADERS, timeout=timeout
            ) as response:
                await response.read()
                status = response.status
                retry_after = _seconds(response.headers.get("Retry-After"))
        except TimeoutError:
            return _RETRY, f"no answer within {self.policy.timeout_s:g} s", None
        except aiohttp.ClientError as exc:
            return _RETRY, f"{type(exc).__name__}: {_without_url(str(exc), self.url)}", None
        if 200 <= status < 300:
            return _OK, "", None
        if status == 429 or status >= 500:
            return _RETRY, f"HTTP {status}", retry_after
        return _REFUSED, f"HTTP {status}", None

    def _delivered(self) -> None:
        self.delivered += 1
        if self._outage:
            log.info("webhook: %s answers again", _where(self.url))
        self._outage = 0

    def _refused(self, detail: str) -> None:
        self.refused += 1
        if not self._refusal_logged:
            self._refusal_logged = True
            log.warning(
                "webhook: %s refused an alert with %s; not retried (a refused request would be "
                "refused again). Check the URL and what the receiver expects; further refusals "
                "are only counted", _where(self.url), detail,
            )  # fmt: skip

    def _retryable(self, detail: str) -> None:
        if not self._outage:
            log.warning("webhook: cannot deliver to %s (%s); retrying with backoff",
                        _where(self.url), detail)  # fmt: skip
        self._outage += 1


def _seconds(value: str | None) -> float | None:
    """A Retry-After header given in seconds (the HTTP-date form is ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _without_url(text: str, url: str) -> str:
    return text.replace(url, _where(url))
