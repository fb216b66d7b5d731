"""HTTP status + response body → one `LlmError`, the same way for every server.

Servers disagree on the error envelope (a string, an object, vLLM's old flat form) and on the
status: LM Studio answers 200 for unknown routes and for some prediction failures, so the body
decides before the status does. The order is: the error's `type`/`code` fields, then known
message substrings (docs/llm-protocol.md §4), then the status alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamer.errors import (
    LlmAuthError,
    LlmConfigError,
    LlmError,
    LlmInputError,
    LlmNoVisionError,
    LlmTimeoutError,
    LlmUnavailableError,
)

__all__ = ["ErrorBody", "classify", "error_body"]


@dataclass(frozen=True)
class ErrorBody:
    """An error found in a response body, whatever its envelope."""

    message: str
    type: str | None = None
    code: str | None = None


def error_body(body: object) -> ErrorBody | None:
    """The error a decoded JSON body carries, or None when it carries none.

    Handles `{"error": "…"}` (LM Studio, Ollama's native API), `{"error": {"message", "type",
    "code"}}` (OpenAI, llama.cpp, llama-cpp-python, LM Studio's newer errors) and vLLM's old
    flat `{"object": "error", "message": …}`.
    """
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, str):
        return ErrorBody(error)
    if isinstance(error, dict):
        message = error.get("message") or body.get("message") or str(error)
        return ErrorBody(str(message), _text(error.get("type")), _text(error.get("code")))
    if body.get("object") == "error":
        message = body.get("message") or str(body)
        return ErrorBody(str(message), _text(body.get("type")), _text(body.get("code")))
    if error is not None:  # e.g. {"error": true}: an error all the same, with no words
        return ErrorBody(str(body))
    return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


# kind → (class, reason for the overlay, fix appended to the message)
_KINDS: dict[str, tuple[type[LlmError], str, str]] = {
    "context_overflow": (
        LlmInputError,
        "context overflow",
        "shorten the prompt, or load the model with a longer context",
    ),
    "no_vision": (LlmNoVisionError, "text-only model", "use a vision model to send images"),
    "bad_image": (LlmInputError, "image refused", "send JPEG or PNG under 5120x5120 pixels"),
    "no_models_loaded": (
        LlmConfigError,
        "no model loaded",
        "load one (`lms load MODEL`, or LM Studio's Developer page), or name one to load",
    ),
    "model_not_found": (
        LlmConfigError,
        "model not found",
        "name a model the server lists (`streamer llm-check` shows them)",
    ),
    "auth": (
        LlmAuthError,
        "API key refused",
        "pass the server's API token (LM Studio: Developer → Server Settings)",
    ),
    "wrong_url": (
        LlmConfigError,
        "wrong URL",
        "give the OpenAI-compatible base URL, ending in /v1 (http://localhost:1234/v1)",
    ),
    "loading": (LlmUnavailableError, "model loading", ""),
    "model_unloaded": (LlmUnavailableError, "model unloaded", ""),
    "busy": (LlmUnavailableError, "server busy", ""),
    "timeout": (LlmTimeoutError, "timed out", ""),
    "server_error": (LlmUnavailableError, "server error", ""),
    "bad_response": (LlmUnavailableError, "bad response", ""),
    "bad_request": (LlmInputError, "request refused", ""),
}

_TYPE_CODE_KINDS = {
    "exceed_context_size_error": "context_overflow",
    "context_length_exceeded": "context_overflow",
    "model_not_found": "model_not_found",
    "invalid_api_key": "auth",
    "authentication_error": "auth",
    "permission_error": "auth",
    "unavailable_error": "loading",
}

# First match wins, so the specific phrases come before the general ones.
_MESSAGE_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        (r"image input is not supported|does not support (images|vision)", "no_vision"),
        (r"vision add-on is not loaded|images were provided", "no_vision"),
        # llama-cpp-python 0.3 without a CLIP model: its chat template joins the list-shaped
        # content of an image request to a string and fails with this TypeError (HTTP 500).
        (r'can only concatenate str \(not "list"\) to str', "no_vision"),
        (r"context (length|window)|input does not fit|context the overflows", "context_overflow"),
        (r"base64 encoded image|decode image|image (is )?too large", "bad_image"),
        (r"no models loaded", "no_models_loaded"),
        (r"model (has been |was )?unloaded", "model_unloaded"),
        (r"invalid model identifier|model\b.*\b(not found|does not exist)", "model_not_found"),
        (r"try pulling it first", "model_not_found"),
        (r"unexpected endpoint or method", "wrong_url"),
        (r"loading model|model is loading", "loading"),
        (r"api (token|key)|unauthori[sz]ed", "auth"),
    )
)


def classify(status: int | None, error: ErrorBody | None, *, where: str) -> LlmError:
    """The error a failed response stands for.

    Args:
        status: the HTTP status (200 counts as a failure when the body carries an error).
        error: the error from the body, None when the body had none (or was not JSON).
        where: what was asked, for the message ("POST http://…/v1/chat/completions").

    Returns:
        The error to raise; `error.retryable` says whether to try again.
    """
    kind = _kind(status, error)
    cls, reason, fix = _KINDS[kind]
    said = f": {_shorten(error.message)}" if error else ""
    message = f"{where} answered HTTP {status}{said}"
    if fix:
        message += f" (fix: {fix})"
    return cls(message, kind=kind, status=status, reason=reason)


def _kind(status: int | None, error: ErrorBody | None) -> str:
    if error is not None:
        for field in (error.code, error.type):
            if field in _TYPE_CODE_KINDS:
                return _TYPE_CODE_KINDS[field]
        for pattern, kind in _MESSAGE_KINDS:
            if pattern.search(error.message):
                return kind
    return _status_kind(status)


def _status_kind(status: int | None) -> str:
    if status in (401, 403):
        return "auth"
    if status == 404:
        # A plain 404 on the OpenAI routes: the base URL lacks /v1 or is another server.
        return "wrong_url"
    if status == 408:
        return "timeout"
    if status == 429:
        return "busy"
    if status is not None and 400 <= status < 500:
        return "bad_request"
    # 5xx, and a 200 whose body holds an error nobody recognises (LM Studio reports prediction
    # failures that way): the server failed this time, so trying again is reasonable.
    return "server_error"


def _shorten(message: str, limit: int = 300) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
