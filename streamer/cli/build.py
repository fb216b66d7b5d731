"""From what the user gave (flags, a `--config` file) to the run's configuration.

`settings(args)` merges the option table's defaults < the file < the command line, keeping
where each value came from; `configure(settings)` checks what no single option can (pairs of
options, the model name), then builds `RunConfig` field by field from the table. The options
that do not map onto one field are built here by name: the inputs, the alert rules, the
viewer, the LLM switch, the text and export caches.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoders import UnknownEncoderError
from encoders.registry import check_model_name, parse_model_name
from streamer.analysis.alerts import AlertRule
from streamer.archive.options import ArchiveConfig
from streamer.cli import config_file
from streamer.cli.flags import dest
from streamer.cli.options import TABLE, by_key
from streamer.cluster.options import ClusterConfig
from streamer.config import MqttConfig, RunConfig, ServeConfig
from streamer.core.options import Declared, Ordered, section_of
from streamer.core.samples import cache_dir, export_cache_dir, text_cache_dir
from streamer.errors import ConfigError
from streamer.llm import LlmConfig
from streamer.sources import stream_names
from streamer.watch.window import show_mode

__all__ = ["Settings", "calibrate_needs_int8", "check_configuration", "configure", "settings"]

log = logging.getLogger("streamer")

#: Sections the builder makes itself (their own options decide whether they exist at all).
_BUILT_HERE = ("llm", "serve", "alerts", "archive", "cluster", "mqtt")


@dataclass(frozen=True, slots=True)
class Settings:
    """The options a run was given, by file key, with where each came from.

    Attributes:
        values: key → typed value, for every option the file or the command line set.
        origins: key → the file's key path, for values the file set and the command line
            did not override.
        file: the configuration file read, if any.
    """

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    file: config_file.FileOptions | None = None

    def get(self, key: str) -> Any:
        """The effective value of an option: given, else its declared default (for a switch:
        whether it was given)."""
        if key in self.values:
            return self.values[key]
        row = by_key()[key]
        return False if row.option.kind in ("switch", "negated", "const") else row.default

    def named(self, key: str, shown: str) -> str:
        """`--flag VALUE` as the user gave it, with the file's key when the file set it."""
        given = f"--{key} {shown}".rstrip()
        origin = self.origins.get(key)
        return f"{given} (file key {origin})" if origin else given


def settings(args: argparse.Namespace) -> Settings:
    """Merge a parse of `streamer run` with the `--config` file it names (if any).

    Raises:
        ConfigError: the file cannot be read or holds a bad key or value.
    """
    given = {r.option.key: getattr(args, dest(r)) for r in TABLE if hasattr(args, dest(r))}
    path = given.get("config")
    if path is None:
        return Settings(given)
    loaded = config_file.load(path)
    values, origins = dict(loaded.values), dict(loaded.origins)
    rows = by_key()
    for key, value in given.items():
        for other in [k for k in values if k != key and _exclusive(rows[k], rows[key])]:
            values.pop(other)  # `--no-drop` given: the file's `live = true` gives way
            origins.pop(other, None)
        if rows[key].option.kind == "list" and key in values:
            value = [*values[key], *value]  # repeatable flags add to the file's
        values[key] = value
        origins.pop(key, None)
    values["inputs"] = [*loaded.inputs, *given.get("inputs", [])]
    return Settings(values, origins, loaded)


def _exclusive(one: Declared, other: Declared) -> bool:
    return one.path == other.path and one.option.kind == other.option.kind == "const"


# --- building the run's configuration ---------------------------------------------------------


def configure(given: Settings) -> RunConfig:
    """The run's configuration; ConfigError names the option as the user gave it."""
    _check_pairs(given)
    _check_model(given)
    inputs = tuple(given.get("inputs")) + _sources_file(given.get("sources"))
    fields = _fields(given)
    run = fields.pop("", {})
    cache = None if given.get("no-cache") else cache_dir()
    fields.setdefault("analysis", {})["text_cache"] = cache and str(text_cache_dir())
    fields.setdefault("encoder", {})["export_cache"] = cache and str(export_cache_dir())
    _calibrate_on_the_input(fields["encoder"], inputs)
    sections = {name: _section(name, fields.get(name, {})) for name in _sections()}
    if "show" in run:
        run["show"] = show_mode(run["show"])
    return RunConfig(
        input=inputs,
        **sections,
        **run,
        llm=None if given.get("no-llm") else LlmConfig(**fields.get("llm", {})),
        serve=_serve(given, fields.get("serve", {})),
        archive=_archive(given, fields.get("archive", {})),
        cluster=_cluster(given, fields.get("cluster", {})),
        mqtt=_mqtt(given, fields.get("mqtt", {})),
        alerts=_alert_rules(given.get("alert") or (), fields.get("alerts", {}), inputs),
        stream_settings=given.file.stream_settings if given.file is not None else {},
        alert_settings=fields.get("alerts", {}),
    )


def _calibrate_on_the_input(encoder: dict[str, Any], inputs: tuple[str, ...]) -> None:
    """`--int8` without `--calibrate`: calibrate on the run's first file input, if it has one
    (its own frames; the encoder falls back to the sample clip for live-only runs)."""
    calibrate_needs_int8(bool(encoder.get("int8")), encoder.get("calibrate"))
    if encoder.get("int8") and encoder.get("calibrate") is None:
        files = [i for i in inputs if "://" not in i and Path(i).expanduser().is_file()]
        if files:
            encoder["calibrate"] = files[0]


def calibrate_needs_int8(int8: bool, calibrate: str | None) -> None:
    """Say that `--calibrate` alone does nothing (it names the video `--int8` calibrates on)."""
    if calibrate is not None and not int8:
        log.warning("--calibrate %s does nothing without --int8: add --int8 to quantise the "
                    "encoder on its frames, or drop --calibrate", calibrate)  # fmt: skip


def _sections() -> list[str]:
    """The RunConfig fields holding a section built from its fields alone."""
    return [
        f.name
        for f in dataclasses.fields(RunConfig)
        if section_of(f) is not None and f.name not in _BUILT_HERE
    ]


def _fields(given: Settings) -> dict[str, dict[str, Any]]:
    """The field values the options set, by section path ("" for RunConfig's own fields)."""
    out: dict[str, dict[str, Any]] = {}
    for row in TABLE:
        key = row.option.key
        if row.on_section or row.path.startswith("cli.") or key not in given.values:
            continue
        section, _, name = row.path.rpartition(".")
        out.setdefault(section, {})[name] = _field_value(row, given.values[key])
    nested = {k: v for k, v in out.items() if k.count(".") == 1}
    for path, values in nested.items():  # a section inside a section (analysis.batch)
        parent, _, name = path.partition(".")
        out.setdefault(parent, {})[name] = values
        del out[path]
    return out


def _field_value(row: Declared, value: Any) -> Any:
    opt = row.option
    if opt.kind == "negated":
        return False
    if opt.kind in ("switch", "const"):
        return opt.const if opt.kind == "const" else True
    if opt.kind == "list":
        value = tuple(value)
    if opt.to_field is None:
        return value
    try:
        return opt.to_field(value)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(opt.flag) else f"{opt.flag}: {text}") from exc


def _section(name: str, values: dict[str, Any]) -> Any:
    """A section of RunConfig: its default with the fields the options set (a section inside
    it from its own default and fields)."""
    return _with(_default_of(RunConfig, name), values)


def _with(default: Any, values: dict[str, Any]) -> Any:
    for f in dataclasses.fields(default):
        if section_of(f) is not None and isinstance(values.get(f.name), dict):
            values[f.name] = _with(getattr(default, f.name), values[f.name])
    return dataclasses.replace(default, **values)


def _default_of(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _serve(given: Settings, fields: dict[str, Any]) -> ServeConfig | None:
    address, token = given.get("serve"), fields.get("token")
    if address is None:
        if token is not None:
            raise ConfigError("--serve-token needs --serve [HOST:]PORT")
        _refuse_set_fields("serve", fields, "--serve [HOST:]PORT (the viewer it applies to)")
        return None
    others = {k: v for k, v in fields.items() if k != "token"}
    return dataclasses.replace(ServeConfig.at(address, token), **others)


def _archive(given: Settings, fields: dict[str, Any]) -> ArchiveConfig | None:
    path = given.get("archive")
    if path is None:
        _refuse_set_fields("archive", fields, "--archive DIR (the archive it applies to)")
        return None
    return ArchiveConfig(path=path, **fields)


def _cluster(given: Settings, fields: dict[str, Any]) -> ClusterConfig | None:
    address = given.get("cluster")
    if address is None:
        _refuse_set_fields("cluster", fields, "--cluster ADDRESS (the cluster it applies to)")
        return None
    return ClusterConfig(address=address, **fields)


def _mqtt(given: Settings, fields: dict[str, Any]) -> MqttConfig | None:
    url = given.get("mqtt")
    if url is None:
        _refuse_set_fields("mqtt", fields, "--mqtt URL (the broker it applies to)")
        return None
    return MqttConfig(url=url, **fields)


def _refuse_set_fields(section: str, fields: dict[str, Any], needs: str) -> None:
    """A section that is off may not have options set to other than their defaults (which
    `config --print` writes for every key, set or not)."""
    rows = {r.path: r for r in TABLE if r.path.startswith(f"{section}.")}
    changed = [k for k, v in fields.items() if v != rows[f"{section}.{k}"].default]
    if changed:
        raise ConfigError(f"{rows[f'{section}.{changed[0]}'].option.flag} needs {needs}")


# --- checks between options ---------------------------------------------------------------------


def _check_pairs(given: Settings) -> None:
    """The `Ordered` rules of every section, on the values as given, in the flags' names."""
    rows = {row.path: row for row in TABLE if not row.on_section}
    for section_path, cls in _section_classes():
        for rule in getattr(cls, "RULES", ()):
            _check_pair(given, rule, rows, section_path)


def _section_classes() -> list[tuple[str, type]]:
    found: list[tuple[str, type]] = []

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            inner = section_of(f)
            if inner is not None:
                found.append((f"{prefix}{f.name}", inner))
                walk(inner, f"{prefix}{f.name}.")

    walk(RunConfig, "")
    return found


def _check_pair(given: Settings, rule: Ordered, rows: dict[str, Declared], section: str) -> None:
    larger, smaller = rows[f"{section}.{rule.larger}"], rows[f"{section}.{rule.smaller}"]
    if rule.when is not None and not given.get(rows[f"{section}.{rule.when}"].option.key):
        return
    high, low = given.get(larger.option.key), given.get(smaller.option.key)
    if high is None or low is None or rule.holds(high, low):
        return
    big, small = larger.option.key, smaller.option.key
    when = ""
    if rule.when is not None:
        when = f" with {given.named(rows[f'{section}.{rule.when}'].option.key, '')}"
    raise ConfigError(
        f"{given.named(big, f'{high:g}')} must be {rule.relation} "
        f"{given.named(small, f'{low:g}')}{when}; raise --{big} or lower --{small}"
    )


def _check_model(given: Settings, thorough: bool = False) -> None:
    """`--model` must name a model of `--encoder` (checked here, so `config --check` sees it);
    `thorough` also checks what the build would (an open_clip pretrained tag: seconds)."""
    model = given.get("model")
    try:
        (check_model_name if thorough else parse_model_name)(given.get("encoder"), model)
    except UnknownEncoderError as exc:
        raise ConfigError(f"{given.named('model', repr(model))}: {exc}") from exc


def check_configuration(given: Settings) -> RunConfig:
    """`configure`, and the checks a run leaves to its start (`streamer config --check`)."""
    config = configure(given)
    _check_model(given, thorough=True)
    return config


# --- inputs and alert rules -------------------------------------------------------------------


def _sources_file(path: str | None) -> tuple[str, ...]:
    """Inputs listed in a file, one per line (`NAME=SPEC` or `SPEC`; `#` comments)."""
    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.split(" #", 1)[0].strip() for line in fh]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--sources: cannot read {path!r}: {exc}") from exc
    specs = tuple(line for line in lines if line and not line.startswith("#"))
    if not specs:
        raise ConfigError(f"--sources: no inputs in {path!r}; write one per line")
    return specs


def _alert_rules(
    values: Any, settings_of_rules: dict[str, Any], inputs: tuple[str, ...]
) -> tuple[AlertRule, ...]:
    """The `--alert [STREAM=]QUERY` rules, each with the `--alert-*` settings."""
    # The run's stream names, to tell STREAM=QUERY from a query that contains "=".
    names = {name for name, _ in stream_names(inputs)}
    rules = []
    for value in values:
        stream, named, rest = value.partition("=")
        if named and stream.strip() in names:
            streams, query = (stream.strip(),), rest
        else:
            streams, query = (), value
        if not query.strip():
            raise ConfigError(
                f"--alert {value!r} has no query text; e.g. --alert 'a person at the door' or, "
                "for one stream, --alert 'door=a person at the door'"
            )
        rules.append(AlertRule(query.strip(), streams, **settings_of_rules))
    return tuple(rules)
