"""Whether an HLS playlist URL is a finished playlist (video on demand) or a live one.

A finished playlist lists every segment and ends with `#EXT-X-ENDLIST`: it is a video file cut
into pieces, so it is read under the file contract (every frame, analysis in media time), like
a remote `.mp4`. A live playlist (a sliding window, or an event still being written) has no
`#EXT-X-ENDLIST` and is read under the live contract. The contract is chosen before the source
opens, so the playlist text is fetched here once: a small GET with the source's open timeout.
`#EXT-X-ENDLIST` is also what FFmpeg's HLS demuxer reads as the playlist's end, which makes the
source `finite` once it opens.

A master playlist (variants at several bit rates) names no segments: its first variant's
playlist decides. A playlist that cannot be fetched or read counts as live, the default for a
URL: the source's own open then reports what is wrong and retries as a live source would.
"""

from __future__ import annotations

import base64
import logging
import urllib.error
import urllib.request
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from streamer.core.redact import redact

__all__ = ["is_playlist_url", "playlist_finished"]

log = logging.getLogger("streamer.sources")

_SUFFIXES = (".m3u8", ".m3u")
# A media playlist of ten hours of 1 s segments is well under this.
_MAX_BYTES = 4 << 20


def is_playlist_url(url: str) -> bool:
    """Whether `url` is an http(s) URL whose path names an HLS playlist (`.m3u8`, `.m3u`)."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and parts.path.lower().endswith(_SUFFIXES)


def playlist_finished(url: str, timeout: float) -> bool:
    """Whether the HLS playlist at `url` is finished (it ends with `#EXT-X-ENDLIST`).

    Blocking: one GET, two for a master playlist (its first variant's playlist decides).

    Args:
        url: the playlist's http(s) URL; credentials in it are sent as HTTP basic auth and
            never logged.
        timeout: seconds for each request.

    Returns:
        True for a finished playlist; False for a live one, and for one that cannot be
        fetched or is not a playlist (the source opens it as live and reports the failure).
    """
    try:
        text, where = _fetch(url, timeout)
        variant = _first_variant(text)
        if variant is not None:
            text, where = _fetch(urljoin(where, variant), timeout)
    except (OSError, ValueError, UnicodeError) as exc:
        log.debug("%s: could not read the playlist to tell whether it ends (%s)", redact(url),
                  redact(str(exc)))  # fmt: skip
        return False
    return any(line.strip() == "#EXT-X-ENDLIST" for line in text.splitlines())


def _first_variant(text: str) -> str | None:
    """The URI of a master playlist's first variant; None for a media playlist."""
    lines = [line.strip() for line in text.splitlines()]
    for number, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF"):
            uris = (uri for uri in lines[number + 1 :] if uri and not uri.startswith("#"))
            return next(uris, None)
    return None


def _fetch(url: str, timeout: float) -> tuple[str, str]:
    """The text of the playlist at `url` and its final URL (after redirects, for relative
    URIs), with the URL's credentials sent as basic auth rather than in the request line."""
    parts = urlsplit(url)
    headers = {"User-Agent": "streamer"}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        netloc = parts.hostname or ""
        if ":" in netloc:  # an IPv6 address
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
        url = urlunsplit(parts._replace(netloc=netloc))
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read(_MAX_BYTES + 1)
        where = response.geturl()
    if len(body) > _MAX_BYTES:
        raise ValueError(f"the playlist is larger than {_MAX_BYTES} bytes")
    text = body.decode("utf-8-sig")
    if not text.lstrip().startswith("#EXTM3U"):
        raise ValueError("not an HLS playlist (no #EXTM3U)")
    return text, where
