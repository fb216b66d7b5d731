"""The stream API's values that are more than one option's text: a stream's labels, its set of
alerts, its captions on or off.

::

    "labels":   "dog, cat, person"  or  ["dog", "cat", "person"]
    "alerts":   ["a person at the door", {"query": "a red car", "alert-threshold": 0.3}]
    "captions": "on" / "off"  (or true / false)

Each part of them is still typed by its option's declaration (`Option.read`, as a
configuration file is): a label is `--labels` text, an alert's settings are the
`--alert-threshold`, `--alert-frames` and `--alert-cooldown` of a run, under the same keys.
Unlike `--labels`, a body never names a file: the server reads no file for a request.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamer.analysis.alerts import AlertRule
from streamer.core.options import Declared, declared
from streamer.errors import ConfigError
from streamer.sources import split_stream_name

__all__ = [
    "AlertSpec",
    "AlertsValue",
    "CaptionsValue",
    "LabelsValue",
    "Value",
    "json_kind",
    "stream_key",
]

_ALERT_ROWS = {row.option.key: row for row in declared(AlertRule, "alerts.")}
_FIELD_OF = {key: row.path.split(".", 1)[1] for key, row in _ALERT_ROWS.items()}


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A checked body.

    Attributes:
        name: the stream's name (adding), else None.
        input: its source spec (adding), else None.
        settings: option path (`analysis.analyze_fps`, `analysis.labels`, `outputs.jsonl`) or
            key (`alerts`: `stream_body.AlertSpec`s, `captions`: a bool) → typed value, for
            the keys the body gave.
    """

    name: str | None = None
    input: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


class Value(Protocol):
    """How one body key's value is read and documented."""

    def read(self, value: Any) -> Any: ...

    def schema(self) -> dict[str, Any]: ...


def _typed(row: Declared, where: str, value: Any) -> Any:
    try:
        return row.option.read(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} (like {row.option.flag})") from None


@dataclass(frozen=True, slots=True)
class LabelsValue:
    """A stream's zero-shot labels: a comma-separated text or an array of labels.

    Args:
        row: the `--labels` option (its declaration types each item).
    """

    row: Declared

    def read(self, value: Any) -> tuple[str, ...]:
        """The labels, unique, in the order given.

        Raises:
            ConfigError: not text or an array of texts, a file name, or no label at all.
        """
        if isinstance(value, list):
            items = [_typed(self.row, f"labels[{i}]", v).strip() for i, v in enumerate(value)]
        else:
            text = _typed(self.row, "labels", value)
            if os.sep in text or text.strip().endswith(".txt"):
                raise ConfigError(
                    f"labels: {text!r} looks like a file; a body gives the labels themselves "
                    '(\'dog, cat\' or ["dog", "cat"]): the server reads no file for a request'
                )
            items = [part.strip() for part in text.split(",")]
        labels = tuple(dict.fromkeys(item for item in items if item))
        if not labels:
            raise ConfigError('labels: no label given; e.g. "dog, cat, person"')
        return labels

    def schema(self) -> dict[str, Any]:
        return {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                           "minItems": 1}],
            "description": "the stream's own zero-shot labels, replacing the run's (like "
            f"{self.row.option.flag}, but never a file): 'dog, cat' or [\"dog\", \"cat\"]",
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """One alert of a body: its query and the settings it gave (`AlertRule` field → value)."""

    query: str
    settings: dict[str, Any] = field(default_factory=dict)

    def rule(self, stream: str, defaults: dict[str, Any]) -> AlertRule:
        """The rule for `stream`; settings not given are `defaults`' (the run's
        `RunConfig.alert_settings`), else the declared ones."""
        return AlertRule(self.query, (stream,), **{**defaults, **self.settings})


@dataclass(frozen=True, slots=True)
class AlertsValue:
    """A stream's whole set of alerts: an array of queries, or of objects with a query and
    the settings of `--alert-threshold`, `--alert-frames`, `--alert-cooldown`."""

    def read(self, value: Any) -> tuple[AlertSpec, ...]:
        """The alerts, in order.

        Raises:
            ConfigError: not an array, an item that is no query, an unknown or bad setting, a
                query given twice; the message names the item.
        """
        if not isinstance(value, list):
            raise ConfigError(
                "alerts: must be an array of queries (an empty one removes them all), e.g. "
                '["a person at the door", {"query": "a red car", "alert-threshold": 0.3}]'
            )
        specs = [self._item(f"alerts[{i}]", item) for i, item in enumerate(value)]
        seen: set[str] = set()
        for i, spec in enumerate(specs):
            if spec.query in seen:
                raise ConfigError(f"alerts[{i}]: {spec.query!r} is given twice")
            seen.add(spec.query)
        return tuple(specs)

    def _item(self, where: str, item: Any) -> AlertSpec:
        if isinstance(item, str):
            item = {"query": item}
        if not isinstance(item, dict):
            raise ConfigError(f'{where}: must be a query or an object with a "query"')
        query, settings = item.get("query"), {}
        if not isinstance(query, str) or not query.strip():
            raise ConfigError(f'{where}.query: must be some text, e.g. "a person at the door"')
        for raw, setting in item.items():
            key = str(raw).replace("_", "-")
            if key == "query":
                continue
            if key not in _ALERT_ROWS:
                allowed = ", ".join(["query", *_ALERT_ROWS])
                raise ConfigError(f"{where}.{key}: unknown key; allowed here: {allowed}")
            settings[_FIELD_OF[key]] = _typed(_ALERT_ROWS[key], f"{where}.{key}", setting)
        return AlertSpec(query.strip(), settings)

    def schema(self) -> dict[str, Any]:
        settings = {
            key: {"type": ["string", "number"],
                  "description": f"{row.option.help}: {row.option.check.expected} (like "
                                 f"{row.option.flag}; default: the run's)"}
            for key, row in _ALERT_ROWS.items() if row.option.check is not None
        }  # fmt: skip
        rule = {
            "type": "object",
            "required": ["query"],
            "additionalProperties": False,
            "properties": {"query": {"type": "string"}, **settings},
        }
        return {
            "type": "array",
            "items": {"oneOf": [{"type": "string"}, rule]},
            "description": "the stream's whole set of text-query alerts, replacing the one it "
            "had (an empty array removes them): queries, or objects with a query and its "
            "settings",
        }


@dataclass(frozen=True, slots=True)
class CaptionsValue:
    """Whether a stream is captioned (asks the LLM, or makes captions from its tags)."""

    def read(self, value: Any) -> bool:
        """True for on, False for off.

        Raises:
            ConfigError: anything but true, false, "on", "off".
        """
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("on", "off"):
            return value.strip().lower() == "on"
        raise ConfigError(f'captions: must be "on" or "off" (or true/false), got {value!r}')

    def schema(self) -> dict[str, Any]:
        return {
            "enum": ["on", "off", True, False],
            "description": "captions for this stream: off asks the LLM nothing for it and "
            "writes no caption (the other streams go on as they were)",
        }


def stream_key(key: str, value: Any) -> str:
    """A stream's own key (`name`, `input`): text, and a name that can name files.

    Raises:
        ConfigError: not text, or a name with characters a file name must not have.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty string, got {json_kind(value)}")
    if key == "name" and split_stream_name(f"{value}=x")[0] != value:
        raise ConfigError(
            f"name: {value!r} is no stream name; use letters, digits, '_', '.' and '-' "
            "(it names files through {stream})"
        )
    return value.strip() if key == "input" else value


def json_kind(value: Any) -> str:
    """What a JSON value is, in words ("an array", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return json.dumps(value)
    names = {dict: "an object", list: "an array", str: "a string", int: "a number"}
    return names.get(type(value), "a number" if isinstance(value, float) else type(value).__name__)
