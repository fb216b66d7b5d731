"""Keep credentials out of everything a source prints.

Camera URLs often carry a user and password (`rtsp://admin:secret@10.0.0.7/stream1`) or a token
in the query (`?password=…`, `?token=…`). `redact` blanks both in any text, so source names, specs,
log lines, error messages and statuses can be shown, logged and served safely.

FFmpeg's own log lines reach Python logging under `libav.*` loggers when a program turns PyAV's
logging on (`av.logging.set_level`); `install_libav_redaction` makes those records pass through
`redact` too.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["install_libav_redaction", "redact"]

# scheme://userinfo@ — userinfo runs to the last "@" before the host; it may itself hold a raw
# "@" (a careless password), so the class allows "@" and the match backtracks to the last one.
# After "user:", a password may also hold a raw "#", "/" or "?" (typed without percent-encoding:
# the URL is then refused, and its message must not show it): there it runs to the URL's last
# "@". A path with an "@" after a port (host:554/a@b) loses its host: shown less, never a secret.
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)"
    r"(?:[^\s/?#'\"<>]*@|[^\s/?#'\"<>@:]*:[^\s'\"<>]*@)"
)
# Secrets passed as query parameters, a common habit of IP cameras' HTTP interfaces.
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pass|pwd|token|access_token|auth|key|api_key|apikey"
    r"|secret|signature|sig)=)[^&;#\s'\"<>]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Return `text` with URL credentials replaced by `***`.

    Example:
        >>> redact("cannot open 'rtsp://admin:secret@10.0.0.7:554/live?token=abc&ch=1'")
        "cannot open 'rtsp://***@10.0.0.7:554/live?token=***&ch=1'"
    """
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _QUERY_SECRET.sub(r"\g<key>***", text)


_install_lock = threading.Lock()
_installed = False


def install_libav_redaction() -> None:
    """Redact every log record of the `libav` logger and its children (FFmpeg's messages).

    A `logging.Filter` on the `libav` logger would not do: filters of a parent logger do not see
    records logged on its children (`libav.rtsp`, `libav.tcp`, …), and PyAV makes a child per
    FFmpeg component. So this wraps the log-record factory, keeping whatever factory was set
    before. Idempotent; the sources call it before they open a URL.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if record.name == "libav" or record.name.startswith("libav."):
                record.msg = redact(record.getMessage())
                record.args = ()
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
