"""Values as TOML text, and secrets masked for printing: shared by the file reader's messages
and `streamer config --print`."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from streamer.core.redact import redact

MASK = "***"
_SECRET_KEY = re.compile(r"(?:^|-)(?:api-key|apikey|token|password|passwd|secret)$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}  # fmt: skip


def toml(value: Any) -> str:
    """A TOML value (strings, numbers, booleans, lists); anything else as its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml(str(k))} = {toml(v)}" for k, v in value.items()) + "}"
    text = value if isinstance(value, str) else str(value)
    return '"' + "".join(_escape(c) for c in text) + '"'


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char


def mask(key: str, value: Any, secret: bool = False) -> Any:
    """`value` fit to show: secrets by declaration or name, URL credentials and tokens, webhook
    paths."""
    if isinstance(value, list | tuple):
        return [mask(key, v, secret) for v in value]
    if not isinstance(value, str):
        return value
    if secret or _SECRET_KEY.search(key):
        return MASK if value else value
    if "webhook" in key:
        value = _mask_url_path(value)
    return redact(value)


def _mask_url_path(url: str) -> str:
    """Webhook URLs often are the secret (Slack, Discord: a token in the path): keep the host."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    path = "/" + MASK if parts.path.strip("/") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, MASK if parts.query else "", ""))
