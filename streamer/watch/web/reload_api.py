"""`POST /api/reload`: re-read the run's `--config` file (`streamer.reload`), over HTTP.

The route is one of the stream API's (`stream_api.ROUTES`: the same token rules, JSON errors
and OpenAPI document); what it answers and how it fails is here. 200 with what the reload did
(`streamer.reload.Outcome.as_dict`); 400 a file that does not read, with the start-up
reader's words (nothing changed); 409 a run started without `--config`.
"""

from __future__ import annotations

from typing import Any, Protocol

from streamer.errors import NoConfigFileError

__all__ = ["Reloads", "reload", "responses"]


class Reloads(Protocol):
    """What re-reads a run's `--config` file (`streamer.reload.Reloader`)."""

    async def reload(self) -> dict[str, Any]: ...


async def reload(reloader: Reloads | None) -> dict[str, Any]:
    """Reload with the run's reloader; what it did.

    Raises:
        NoConfigFileError: the run has no file to re-read.
        ConfigError: the file does not read; the running configuration is kept.
    """
    if reloader is None:
        raise NoConfigFileError(
            "this run was started without --config: there is no file to re-read; start it "
            "with --config FILE (streams in [[sources]]) to reload it, or change its streams "
            "with POST, PATCH and DELETE /api/streams"
        )
    return await reloader.reload()


_NAMES = {"type": "array", "items": {"type": "string"}}
_ANSWER = {
    "type": "object",
    "description": "what the reload did; `ignored`: options changed in the file that take "
    "effect only at the next start, one line each; `failed`: streams it could not start",
    "properties": {
        "added": _NAMES, "removed": _NAMES, "kept": _NAMES, "ignored": _NAMES,
        "changed": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "what": {"enum": ["input", "rate"]}}}},
        "failed": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "error": {"type": "string"}}}},
        "summary": {"type": "string"},
    },
}  # fmt: skip
_ERRORS = {
    "400": "the file does not read (TOML syntax, an unknown key, a bad value): the message "
    "says where; nothing changed",
    "401": "the token is missing or wrong",
    "403": "changes need the viewer's token (--serve-token), also on this machine",
    "409": "the run was started without --config: there is no file to re-read",
    "501": "this run cannot change its streams (a --cluster run)",
}


def responses(error: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI responses of the route; `error` is the schema of an error body."""
    answers: dict[str, Any] = {
        "200": {"description": "done", "content": {"application/json": {"schema": _ANSWER}}}
    }
    for code, text in _ERRORS.items():
        answers[code] = {"description": text, "content": {"application/json": {"schema": error}}}
    return answers
