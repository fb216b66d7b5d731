"""Errors raised by the LLM client.

::

    StreamerError
    └── LlmError                          anything the LLM client raises on purpose
        ├── LlmUnavailableError (ConnectionError)   retryable: refused, dropped, 429/5xx, 503 while
        │   │                             loading, a body that is not the JSON asked for
        │   ├── LlmTimeoutError (TimeoutError)       no answer within the connect or read timeout
        │   └── LlmCircuitOpenError       the breaker is open: nothing was sent
        ├── LlmConfigError                not retryable, the setup is wrong: no model loaded,
        │   │                             unknown model, wrong URL (LM Studio's 200 "Unexpected
        │   │                             endpoint")
        │   └── LlmAuthError (PermissionError)       the server wants a (different) API key
        └── LlmInputError (ValueError)    not retryable, this request is wrong: context overflow,
            │                             an image the server cannot decode, an empty answer
            └── LlmNoVisionError          an image sent to a text-only model; the client answers it
                                          by marking the model text-only and resending the tags

Only `LlmUnavailableError` is retried (with backoff) and only it counts towards the circuit
breaker. Every error carries `kind` (a short machine name such as "context_overflow"), the HTTP
`status` when there was one, and `reason`, a few words for the overlay ("no model loaded").
Messages name the bad value and, where there is one, the fix.
"""

from __future__ import annotations

from streamer.errors import StreamerError

__all__ = [
    "LlmAuthError",
    "LlmCircuitOpenError",
    "LlmConfigError",
    "LlmError",
    "LlmInputError",
    "LlmNoVisionError",
    "LlmTimeoutError",
    "LlmUnavailableError",
]


class LlmError(StreamerError):
    """Base class of the LLM client's errors.

    Attributes:
        kind: a short machine name of what happened ("unreachable", "model_not_found", ...).
        status: the HTTP status of the response, None when there was no response.
        reason: a few words for a status line, without the fix.
    """

    def __init__(
        self, message: str, *, kind: str, status: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.reason = reason or kind.replace("_", " ")

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed."""
        return isinstance(self, LlmUnavailableError)


class LlmUnavailableError(LlmError, ConnectionError):
    """The server could not answer now: worth retrying with backoff."""


class LlmTimeoutError(LlmUnavailableError, TimeoutError):
    """The server did not connect or answer in time."""


class LlmCircuitOpenError(LlmUnavailableError):
    """The circuit breaker is open after repeated failures; the request was not sent."""


class LlmConfigError(LlmError):
    """The server is reachable but set up differently from what the client asks for."""


class LlmAuthError(LlmConfigError, PermissionError):
    """The server refused the API key (or wants one)."""


class LlmInputError(LlmError, ValueError):
    """The server refused this request, or answered it with nothing usable."""


class LlmNoVisionError(LlmInputError):
    """The model does not take images."""
