"""What the client reads back: the answer text of a chat completion, cleaned for its reader.

Models answer with markdown, reasoning blocks, several paragraphs or nothing at all; the overlay
wants one short paragraph of plain text. `clean_caption` makes one; `clean_answer` keeps the
paragraphs of a longer answer (a summary, an answer to a question) and its `[n]` citations.
An answer with nothing left after cleaning is an error (`LlmInputError`, kind "empty_answer")
rather than a blank caption: the caller keeps its previous caption, and the request is not
retried because the same prompt tends to give the same nothing (a silent context overflow, a
reasoning-only answer).
"""

from __future__ import annotations

import re
import unicodedata

from streamer.errors import LlmInputError, LlmUnavailableError

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_CAPTION_CHARS",
    "answer_text",
    "clean_answer",
    "clean_caption",
    "drop_unfinished",
]

MAX_CAPTION_CHARS = 300
MAX_ANSWER_CHARS = 2000

_THINK = re.compile(
    r"<(think|thinking|reasoning)>.*?(</\1>|$)|^.*?</(think|thinking|reasoning)>", re.S | re.I
)
_FENCE = re.compile(r"^\s*(```|~~~)[\w+-]*\s*$", re.M)
_HEADER = re.compile(r"^\s{0,3}#{1,6}\s+", re.M)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.M)
_QUOTE = re.compile(r"^\s*>\s?", re.M)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
# Paired emphasis only, so snake_case words and a lone "*" survive.
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1(?!\w)", re.S)
_CODE = re.compile(r"`+([^`]*)`+")
# Terminal escape sequences (colours, cursor moves): CSI `ESC [ ... letter` and OSC `ESC ] ... BEL`.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_LABEL = re.compile(r"^(caption|answer|description)\s*:\s*", re.I)


def answer_text(body: object, *, where: str) -> str:
    """The raw answer text of a non-streamed chat completion.

    Args:
        body: the decoded JSON of a 2xx response that carries no error.
        where: what was asked, for the message.

    Raises:
        LlmUnavailableError: the body is not a chat completion (kind "bad_response").
    """
    try:
        message = body["choices"][0]["message"]  # type: ignore[index]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LlmUnavailableError(
            f"{where} answered with something that is not a chat completion: {str(body)[:200]!r}",
            kind="bad_response",
            reason="bad response",
        ) from exc
    if isinstance(content, list):  # some servers answer in parts, like the request's
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    text = content if isinstance(content, str) else ""
    choice = body["choices"][0]  # type: ignore[index]
    if isinstance(choice, dict) and choice.get("finish_reason") == "length":
        text = drop_unfinished(text)
    return text


# A sentence's end: its mark, closing quotes or brackets, then space (or the text's end).
_SENTENCE_END = re.compile(r"[.!?。！？…][\"'”’)\]]*(?=\s|$)")


def drop_unfinished(text: str) -> str:
    """`text` cut by the token limit, back to the end of its last whole sentence; as it is when
    it holds none (a caption of one long sentence keeps what it has).

    >>> drop_unfinished("A dog runs on the grass. Two cyclists in traditional Japanese")
    'A dog runs on the grass.'
    >>> drop_unfinished("A dog runs across a very long")
    'A dog runs across a very long'
    """
    ends = list(_SENTENCE_END.finditer(text.rstrip()))
    return text[: ends[-1].end()] if ends else text


def clean_caption(text: str, max_chars: int = MAX_CAPTION_CHARS) -> str:
    """One paragraph of plain text from a model's answer.

    Removes reasoning blocks (`<think>…</think>`, also an unclosed one cut off by the token
    limit), terminal escape sequences, code fences, markdown headers, bullets, quotes, emphasis
    and links, control and invisible characters and U+FFFD (left by bytes that were not UTF-8);
    collapses whitespace and surrounding quotes; cuts to `max_chars` at a word boundary with an
    ellipsis.

    Raises:
        LlmInputError: no letter or digit is left (kind "empty_answer").
    """
    text = _ANSI.sub("", _THINK.sub(" ", text))
    for pattern in (_FENCE, _HEADER, _BULLET, _QUOTE):
        text = pattern.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = "".join(" " if _invisible(ch) else ch for ch in text)
    text = " ".join(text.split())
    text = _LABEL.sub("", text).strip().strip("\"'“”‘’").strip()
    _require_text(text, "caption")
    return _cut(text, max_chars)


def clean_answer(text: str, max_chars: int = MAX_ANSWER_CHARS) -> str:
    """Plain text from a longer answer, its paragraphs and `[n]` citations kept.

    Removes reasoning blocks, terminal escape sequences, code fences, markdown headers and
    emphasis, invisible characters and U+FFFD; keeps bullets' text on their own lines;
    collapses the spaces within each line and blank lines between paragraphs to one; cuts to
    `max_chars` at a word boundary with an ellipsis.

    Raises:
        LlmInputError: no letter or digit is left (kind "empty_answer").
    """
    text = _ANSI.sub("", _THINK.sub(" ", text))
    text = _HEADER.sub("", _FENCE.sub("", text))
    text = _EMPHASIS.sub(r"\2", _CODE.sub(r"\1", text))
    lines = []
    for line in text.splitlines():
        line = "".join(" " if _invisible(ch) else ch for ch in line)
        lines.append(" ".join(line.split()))
    text = "\n".join(lines).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    text = _LABEL.sub("", text).strip()
    _require_text(text, "answer")
    return _cut(text, max_chars)


def _require_text(text: str, what: str) -> None:
    if not any(ch.isalnum() for ch in text):  # nothing but leftover markup or symbols
        raise LlmInputError(
            f"the model answered with no {what} text (a reasoning-only answer, or a context "
            "overflow the server did not report)",
            kind="empty_answer",
            reason="empty answer",
        )


def _invisible(ch: str) -> bool:
    # Cc control, Cf format (zero-width, bidi), Co/Cs/Cn; Z* separators other than a space.
    category = unicodedata.category(ch)
    return ch == "\ufffd" or category[0] == "C" or (category[0] == "Z" and ch != " ")


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:  # one very long "word" is cut mid-word rather than dropped
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"
