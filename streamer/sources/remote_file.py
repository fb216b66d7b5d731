"""A video file on a web server (`http(s)://…/clip.mp4`, a finished HLS playlist), read under
the file contract: how often its connection is tried again, and what to say when it cannot be
read at all.

A camera may come back at any time, so a live source retries for as long as the run goes on;
a file that its server cannot serve now will not be served a minute later, so a remote file
gives up after `FILE_ATTEMPTS` failed connections in a row (unless `--reconnect-attempts`
says otherwise) and its error says why.

The common reason a remote MP4 opens and then breaks at once ("Input/output error"): its
index (the `moov` box) is at the end of the file, which FFmpeg reaches by a byte-range request,
and the server does not serve byte ranges (Python's `http.server`, some object stores behind a
proxy). One HEAD request tells.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from streamer.core.redact import redact
from streamer.core.retry import RetryPolicy
from streamer.sources.names import FILE_SUFFIXES
from streamer.sources.playlist import is_playlist_url, playlist_finished

__all__ = ["FILE_ATTEMPTS", "file_policy", "is_remote_file", "live_by_default", "no_ranges_hint"]

log = logging.getLogger("streamer.sources")

FILE_ATTEMPTS = 5  # failed connections in a row before a remote file is given up
# A URL path ending like this is a file on a web server: read it to the end, nothing dropped.
_INDEXED = (".mp4", ".m4v", ".mov")  # files whose index (moov) may sit at their end


def is_remote_file(url: str) -> bool:
    """Whether `url` names a video file or an HLS playlist on a web server (by its path)."""
    return urlsplit(url).path.lower().endswith(FILE_SUFFIXES) or is_playlist_url(url)


def live_by_default(url: str, open_timeout: float) -> bool:
    """The default contract of `url`: live, except for a video file on a web server and a
    finished HLS playlist (fetched to tell: blocking), which are read like files."""
    parts = urlsplit(url)
    if parts.scheme.lower() in ("rtsp", "rtsps"):
        return True
    if parts.path.lower().endswith(FILE_SUFFIXES):
        return False
    if is_playlist_url(url) and playlist_finished(url, open_timeout):
        log.info("%s: a finished HLS playlist (video on demand): every frame is read, as from "
                 "a file (--live reads it as a live stream)", redact(url))  # fmt: skip
        return False
    return True


def file_policy(policy: RetryPolicy) -> RetryPolicy:
    """`policy` bounded to `FILE_ATTEMPTS` when it retries for ever (the live default).

    >>> file_policy(RetryPolicy(initial=0.5, cap=10.0, max_attempts=None)).max_attempts
    5
    >>> file_policy(RetryPolicy(initial=0.5, cap=10.0, max_attempts=2)).max_attempts
    2
    """
    if policy.max_attempts is not None:
        return policy
    return dataclasses.replace(policy, max_attempts=FILE_ATTEMPTS)


def no_ranges_hint(url: str, timeout: float = 3.0) -> str:
    """ " Fix: …" when the server of `url` (an http(s) video file) says it serves no byte
    ranges, else "". Blocking: one HEAD request; called on the decode thread after a
    connection broke. `url` without credentials (a server that wants them answers 401: no
    hint, the error stays as it is)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.path.lower().endswith(_INDEXED):
        return ""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "streamer"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            ranges = (response.headers.get("Accept-Ranges") or "").lower()
    except (OSError, ValueError):
        return ""
    if "bytes" in ranges:
        return ""
    return (". Fix: the server does not serve byte ranges, which FFmpeg needs to reach an "
            "index at the file's end: serve it from a server that does (nginx, Caddy, most "
            "object stores), or move the index to the front once: ffmpeg -i IN.mp4 -c copy "
            "-movflags +faststart OUT.mp4")  # fmt: skip
