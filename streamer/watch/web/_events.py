"""Live events for the page (Server-Sent Events) and the caption history behind them: captions,
alerts (with their clip's URL under `--archive`) and the alerts that clear, and the archive
stopping or going on writing.

Each event is serialised once and put on every client's bounded queue. A client that falls
`queue_size` events behind has its queue dropped and its connection closed: its browser
reconnects (EventSource does so by itself) and catches up from the history, and the pipeline
never waits for it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any

from streamer.core.frame import Caption
from streamer.watch.web._status import caption_record

_ALERT_FIELDS = ("time", "wall", "query", "score", "threshold", "frame_index", "caption", "clip")
_CLEARED_FIELDS = ("time", "wall", "query", "score", "threshold", "frame_index", "fired", "reason")
#: Where the viewer serves the archive's alert clips (`_clips.py`): `Alert.clip` is relative to
#: the archive directory (`clips/<stream>/<file>.mp4`), and so its URL is this + `clip`.
ARCHIVE_ROUTE = "/archive/"


def summary_record(stream: str, summary: Any, ident: int) -> dict[str, Any]:
    """An LLM summary's JSON-ready fields (`streamer.archive.summaries.Summary`); `wall` and
    `pts` are its stretch's end, where the page files it."""
    return {
        "id": ident, "stream": stream, "kind": summary.kind, "text": summary.text,
        "wall": round(summary.end_wall, 3), "pts": round(summary.end_media, 3),
        "start_wall": round(summary.start_wall, 3), "start_pts": round(summary.start_media, 3),
        "model": summary.model,
        "cited": [{"pts": round(r.media_time, 3), "wall": round(r.wall_time, 3)}
                  for r in summary.cited],
    }  # fmt: skip


def sse_message(event: str, data: dict[str, Any], ident: int | None = None) -> bytes:
    """One Server-Sent Event (`data` as one JSON line, so no line break can split it)."""
    head = f"id: {ident}\n" if ident is not None else ""
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


def alert_record(stream: str, alert: Any, ident: int) -> dict[str, Any]:
    """An alert's JSON-ready fields (the frame itself stays out); with a clip, `clip_url` is
    the path this viewer serves it at (the token rules apply)."""
    record = _fields(stream, alert, ident, _ALERT_FIELDS)
    clip = record["clip"]
    record["clip_url"] = ARCHIVE_ROUTE + clip if isinstance(clip, str) else None
    return record


def cleared_record(stream: str, cleared: Any, ident: int) -> dict[str, Any]:
    """An alert that cleared (`AlertCleared`): when, why (`reason`: "no match", or why its stream
    stopped delivering frames, `score` null then: `AlertCleared`), and when it last `fired`."""
    return _fields(stream, cleared, ident, _CLEARED_FIELDS)


def _fields(stream: str, event: Any, ident: int, names: tuple[str, ...]) -> dict[str, Any]:
    record: dict[str, Any] = {"id": ident, "stream": stream}
    for name in names:
        value = getattr(event, name, None)
        if isinstance(value, float):
            value = round(value, 4) if value == value and abs(value) != float("inf") else None
        record[name] = value if isinstance(value, str | int | float | type(None)) else str(value)
    return record


_ARCHIVE_LANE = ""  # the archive's events are kept apart from every stream's


def archive_health(status: dict[str, Any] | None) -> tuple[bool, tuple[str, ...]]:
    """What an `archive` event reports a change of: whether the index stopped being written,
    and the streams whose recording failed (`status`: the archive's plain `status()` dict,
    None without an archive)."""
    if status is None:
        return (False, ())
    failed = tuple(sorted(n for n, r in status["recordings"].items() if r["state"] == "failed"))
    return (status["state"] == "failed", failed)


class EventClient:
    """One connected event-stream client: a bounded queue; None in it means "close"."""

    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(queue_size + 1)  # + the None
        self.limit = queue_size

    def offer(self, message: bytes) -> bool:
        """Queue `message`; False (and the queue emptied, closing) when the client is behind."""
        if self.queue.qsize() >= self.limit:
            self.close()
            return False
        self.queue.put_nowait(message)
        return True

    def close(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def end(self) -> None:
        """Close after what is queued (the run's end: its last status still reaches the page)."""
        if self.queue.full():
            self.close()
        else:
            self.queue.put_nowait(None)


class EventHub:
    """Captions, alerts and summaries of the run: a history per stream, and live delivery to
    clients.

    Args:
        history: captions and alerts kept per stream.
        queue_size: events a client may be behind before it is disconnected.
    """

    def __init__(self, history: int, queue_size: int) -> None:
        self._history: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=history)
        )
        self._queue_size = queue_size
        self._next_id = 0
        self.clients: set[EventClient] = set()
        self.overflows = 0
        self._archive_health: tuple[bool, tuple[str, ...]] = (False, ())  # all well

    def caption(self, caption: Caption) -> dict[str, Any]:
        record = caption_record(caption, self._take_id(), time.time())
        self._keep(caption.stream, "caption", record)
        return record

    def alert(self, stream: str, alert: Any) -> dict[str, Any]:
        record = alert_record(stream, alert, self._take_id())
        self._keep(stream, "alert", record)
        return record

    def alert_cleared(self, stream: str, cleared: Any) -> dict[str, Any]:
        record = cleared_record(stream, cleared, self._take_id())
        self._keep(stream, "alert_cleared", record)
        return record

    def archive(self, status: dict[str, Any] | None) -> None:
        """Publish an `archive` event when the archive stops writing or starts again (its
        index, or a stream's recording: `archive_health`); kept with the history."""
        health = archive_health(status)
        if health == self._archive_health or status is None:
            return
        self._archive_health = health
        record = {"id": self._take_id(), "wall": round(time.time(), 3), **status}
        self._keep(_ARCHIVE_LANE, "archive", record)

    def summary(self, stream: str, summary: Any) -> dict[str, Any]:
        record = summary_record(stream, summary, self._take_id())
        self._keep(stream, "summary", record)
        return record

    def publish(self, message: bytes) -> None:
        """Offer `message` to every client; ones too far behind are closed."""
        for client in list(self.clients):
            if not client.offer(message):
                self.clients.discard(client)
                self.overflows += 1

    def subscribe(self) -> EventClient:
        client = EventClient(self._queue_size)
        self.clients.add(client)
        return client

    def unsubscribe(self, client: EventClient) -> None:
        self.clients.discard(client)

    def records(self, kind: str, stream: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        """Kept records of `kind` ("caption", "alert", "alert_cleared", "summary"), oldest
        first, with `id` >
        `after`."""
        lanes = [self._history.get(stream, ())] if stream is not None else self._history.values()
        found = [rec for lane in lanes for k, rec, _ in lane if k == kind and rec["id"] > after]
        return sorted(found, key=lambda rec: rec["id"])

    def replay(self, after: int) -> bytes:
        """Every kept event with `id` > `after`, in order, as one chunk of messages."""
        kept = [(rec["id"], msg) for lane in self._history.values() for _, rec, msg in lane]
        return b"".join(msg for ident, msg in sorted(kept) if ident > after)

    def close(self, last: bytes | None = None) -> None:
        """Close every client after what it has queued and `last` (the run's final status)."""
        for client in list(self.clients):
            if last is None or client.offer(last):
                client.end()
        self.clients.clear()

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _keep(self, stream: str, kind: str, record: dict[str, Any]) -> None:
        message = sse_message(kind, record, record["id"])
        self._history[stream].append((kind, record, message))
        self.publish(message)
