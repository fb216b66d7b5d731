"""What the client asks: a caption's request, the default prompts, their named fields, and the
chat messages.

Templates use `str.format` fields: `{tags}` (the zero-shot tags, comma-separated), `{stream}`
(the stream's name) and `{time}` (media time such as 0:01:05.2 for files, the local clock time
such as 12:03:04 for live streams). Write a literal brace as `{{` or `}}`.
"""

from __future__ import annotations

import datetime
import string
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.errors import ConfigError, LlmInputError
from streamer.llm.images import check_image

__all__ = [
    "DEFAULT_PROMPT",
    "DEFAULT_SYSTEM_PROMPT",
    "FIELDS",
    "CaptionRequest",
    "chat_messages",
    "check_template",
    "format_time",
    "render",
]

DEFAULT_SYSTEM_PROMPT = (
    "You write captions for a live video overlay. Answer with one short plain sentence, at most "
    "20 words, saying what is happening. No lists, no markdown, no quotes, no preamble."
)
DEFAULT_PROMPT = (
    'A frame from the video stream "{stream}" at {time}. An image classifier sees: {tags}. '
    "Describe the scene in one sentence."
)
FIELDS = frozenset({"tags", "stream", "time"})


@dataclass(frozen=True)
class CaptionRequest:
    """What one caption is about.

    Attributes:
        stream: the stream's name (prompt field {stream}).
        time: media time in seconds for files, a Unix time for live streams (field {time}).
        tags: zero-shot tags, best first (field {tags}).
        image: the frame, HxWx3 uint8 RGB; None sends the tags only.
        jpeg: the frame already encoded (`encode_jpeg` at the client's size and quality), sent
            as it is in place of `image`: a cluster shard encodes it where the frame is, so
            only the JPEG travels to the node that asks the LLM.

    Raises:
        LlmInputError: `image` is not an HxWx3 uint8 array, or `jpeg` is not JPEG bytes.
    """

    stream: str
    time: float
    tags: tuple[str, ...] = ()
    image: np.ndarray | None = None
    jpeg: bytes | None = None

    def __post_init__(self) -> None:
        tags = (self.tags,) if isinstance(self.tags, str) else tuple(self.tags)
        if not all(isinstance(tag, str) for tag in tags):
            got = sorted({type(tag).__name__ for tag in tags if not isinstance(tag, str)})
            raise LlmInputError(f"tags must be strings (labels), got {got}", kind="bad_request")
        object.__setattr__(self, "tags", tags)
        if self.image is not None:
            check_image(self.image)
        if self.jpeg is not None and not (
            isinstance(self.jpeg, bytes) and self.jpeg.startswith(b"\xff\xd8")
        ):
            raise LlmInputError("jpeg must be the bytes of a JPEG image", kind="bad_image")

    @property
    def has_image(self) -> bool:
        """Whether the request carries the frame (as an array or as a JPEG)."""
        return self.image is not None or self.jpeg is not None


# Times above this are Unix times (live streams, ~2001 onwards); below, media time in a file.
_UNIX_TIME_FROM = 1e9


def check_template(name: str, template: object) -> None:
    """Raise ConfigError unless `template` is a string using only the named fields."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"`{name}` must be a non-empty string, got {template!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(
            f"`{name}` must be a valid template (write a literal brace as {{{{ or }}}}), "
            f"got {template!r}: {exc}"
        ) from exc
    if "" in fields or not fields <= FIELDS:
        unknown = sorted(fields - FIELDS) or ["{}"]
        raise ConfigError(
            f"`{name}` may only use the fields {{tags}}, {{stream}}, {{time}}, got {unknown} "
            f"in {template!r}"
        )


def format_time(seconds: float) -> str:
    """Media time as H:MM:SS.s; a Unix time as the local clock time HH:MM:SS."""
    if seconds >= _UNIX_TIME_FROM:
        return datetime.datetime.fromtimestamp(seconds).strftime("%H:%M:%S")
    tenths = round(max(0.0, seconds) * 10)
    minutes, tenth_seconds = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{tenth_seconds / 10:04.1f}"


def render(template: str, *, tags: tuple[str, ...], stream: str, time: float) -> str:
    """Fill a checked template for one request."""
    tag_text = ", ".join(tag for tag in tags if tag) or "nothing recognised"
    return template.format(tags=tag_text, stream=stream, time=format_time(time))


def chat_messages(system: str, user: str, image_uri: str | None) -> list[dict[str, Any]]:
    """OpenAI chat messages: the system prompt, then the user text and at most one image.

    The image goes as an `image_url` part holding a base64 data URI, the one form every
    OpenAI-compatible server accepts (docs/llm-protocol.md §1); a text-only request keeps
    `content` a plain string, which servers without multimodal support also parse.
    """
    if image_uri is None:
        content: str | list[dict[str, Any]] = user
    else:
        content = [
            {"type": "text", "text": user},
            {"type": "image_url", "image_url": {"url": image_uri}},
        ]
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]
