"""Options declared once, on the field that keeps them.

Every user-settable value of a run is a field of a frozen config dataclass (`RunConfig` and the
sections it holds: `OutputConfig`, `BatchPolicy`, `SourceOptions`, ...). The field says what
the option is, once: its default (the field's own), its flag, its help, the check that turns a
typed text into the value, and its table in a configuration file. Everything else is generated
from that declaration: the `streamer run` parser, the `--config` TOML reader, `streamer config
--print`, the README's flag table, and the validation the dataclass runs on construction, so the
Python API and the command line refuse a bad value with the same words.

    @dataclass(frozen=True, slots=True)
    class BatchPolicy:
        max_batch: int = option(8, Option("--max-batch", "frames per encoder batch",
                                          int_at_least(1)))

        def __post_init__(self) -> None:
            validate(self)

Checks between two fields of one dataclass are declared beside its fields (`Ordered`) and
evaluated by `validate` too; the CLI evaluates the same declarations on the values as typed, so
its message names the flags and the file keys.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal

from streamer.core.checks import Checked
from streamer.errors import ConfigError

__all__ = [
    "Declared",
    "Option",
    "Ordered",
    "declared",
    "option",
    "path_text",
    "section",
    "section_of",
    "validate",
    "wrong_type",
]

#: How an option is given: with a value; a switch that sets True; a switch that sets False
#: (`--no-audio`); a pair `--x/--no-x` (`toggle`, None when neither is given); one of several
#: flags that each set the field to their `const` (`--live`/`--no-drop`); repeatable (`list`);
#: the positional inputs.
Kind = Literal["value", "switch", "negated", "toggle", "const", "list", "positional"]

_OPTIONS = "streamer.options"
_SECTION = "streamer.section"
_PATH = "streamer.path"

#: The kinds whose field holds a bool (None too, where the field allows it): a switch is
#: True/False from Python, never "yes" or 1.
_SWITCHES = ("switch", "negated", "toggle")


@dataclass(frozen=True, slots=True)
class Option:
    """One option of `streamer run`, as its field declares it.

    Attributes:
        flag: the long flag (`--max-batch`); the configuration file's key is it without the
            dashes. For the positional inputs, their name (`inputs`).
        help: what it does, for `--help` and the README; the default is added from the field.
        check: turns the text a user typed (or a file's value) into the field's value, or
            refuses it naming what is allowed; None for free text.
        kind: how it is given (`Kind`).
        const: what a `const` flag sets, or what an option given without its `optional` value
            means (`--show` alone: a window per stream).
        optional: the value may be left out.
        short: a short flag (`-o`).
        metavar: the value's name in `--help`.
        group: the help section and file table, when not the section's own.
        default_text: the default in words, where the field's default is not a plain value
            (None that means "on for live streams", "never", ...).
        secret: shown masked wherever the configuration is printed.
        to_field: the command line's value → the field's value, where the two differ (a file
            of labels → the labels); applied when the run is configured, not when parsed, so
            a printed configuration shows what was typed.
    """

    flag: str
    help: str
    check: Checked[Any] | None = None
    kind: Kind = "value"
    const: Any = None
    optional: bool = False
    short: str | None = None
    metavar: str | None = None
    group: str | None = None
    default_text: str | None = None
    secret: bool = False
    to_field: Callable[[Any], Any] | None = None

    @property
    def key(self) -> str:
        """The configuration file's key (`max-batch`)."""
        return self.flag.removeprefix("--")

    @property
    def takes_value(self) -> bool:
        return self.kind in ("value", "list", "positional")

    def read(self, value: Any) -> Any:
        """One value as a configuration file or a JSON body gives it (text or a number), typed
        by the option's check as the command line types it.

        Raises:
            ValueError: the value is not allowed; its message says why, in the words
                "got ...; expected ..." or "must be ..., got ...".
        """
        expected = self.check.expected if self.check is not None else "a string"
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"got {_kind(value)}; expected {expected}")
        text = value if isinstance(value, str) else _number_text(value)
        if self.check is None:
            return text
        try:
            return self.check.convert(text)
        except ValueError as exc:  # the flag's own words
            raise ValueError(f"must be {expected}, got {text.strip()!r}") from exc


def option(
    default: Any, *options: Option, factory: Callable[[], Any] | None = None, path: bool = False
) -> Any:
    """A dataclass field holding `default`, declared as the option(s) `options`.

    `path`: the value names a file or folder. From Python it may be a str or any
    `os.PathLike` (a `pathlib.Path`), kept as its str; anything else is refused (`validate`).
    """
    metadata: dict[str, Any] = {_OPTIONS: options}
    if path:
        metadata[_PATH] = True
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def section(
    cls: type,
    *options: Option,
    group: str = "",
    default: Any = MISSING,
    many: bool = False,
    fields: dict[str, Option] | None = None,
) -> Any:
    """A field holding a config dataclass whose options belong to `group`.

    Args:
        cls: the dataclass held.
        options: options of the section itself (`--serve ADDRESS` makes `serve`, `--no-llm`
            turns `llm` off); the command line builds such sections itself.
        group: the help section and file table of its options (nested sections inherit it).
        default: None for a section that is off unless configured, or the instance it holds
            by default (its fields' defaults are then that instance's); else a `cls()`.
        many: the field holds a tuple of `cls` records (alert rules); its options are the
            settings every record gets.
        fields: options for fields of `cls` declared here rather than on `cls`, for a value
            object shared by several rooms (a `RetryPolicy` is `--reconnect-*` only where
            it is a source's).
    """
    metadata = {_SECTION: (cls, group, many, fields or {}), _OPTIONS: options}
    if default is not MISSING:
        return field(default=default, metadata=metadata)
    return field(default_factory=cls, metadata=metadata)


@dataclass(frozen=True, slots=True)
class Declared:
    """An option found in the config tree.

    Attributes:
        path: where its value goes, from the root (`analysis.batch.max_batch`); a section's
            own options have the section's path.
        option: the declaration.
        default: the field's default (for a section's own options: None).
        group: the help section and file table it is listed under.
        on_section: it is a section's own option (the CLI builds that section itself).
    """

    path: str
    option: Option
    default: Any
    group: str
    on_section: bool = False


def declared(
    cls: type,
    prefix: str = "",
    group: str = "",
    instance: Any = None,
    overrides: dict[str, Option] | None = None,
) -> Iterator[Declared]:
    """Every option of the dataclass `cls` and the sections it holds, in field order.

    Args:
        cls: the dataclass.
        prefix: the path of `cls` in the tree, with a trailing dot.
        group: the group its options are listed under unless they say otherwise.
        instance: the instance whose values are the defaults (a section's default), if any.
        overrides: options of its fields declared by the section that holds it.
    """
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        declared_here = (overrides or {}).get(f.name)
        options: tuple[Option, ...] = (
            (declared_here,) if declared_here else f.metadata.get(_OPTIONS, ())
        )
        default = getattr(instance, f.name) if instance is not None else _default(f)
        inner = f.metadata.get(_SECTION)
        if inner is None:
            for opt in options:
                yield Declared(path, opt, default, opt.group or group)
            continue
        inner_cls, inner_group, _many, fields = inner
        for opt in options:
            yield Declared(path, opt, None, opt.group or inner_group or group, True)
        inner_instance = default if dataclasses.is_dataclass(default) else None
        yield from declared(inner_cls, f"{path}.", inner_group or group, inner_instance, fields)


def section_of(f: dataclasses.Field) -> type | None:
    """The dataclass a field declared with `section` holds, None for any other field."""
    inner = f.metadata.get(_SECTION)
    return inner[0] if inner is not None else None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


# --- checks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ordered:
    """Two fields of one dataclass that must stay in order: `larger relation smaller`.

    Attributes:
        larger, smaller: field names.
        relation: "≥" or ">".
        when: a boolean field that switches the check on (None: always).
        why: a few words of reason for the message, if it is not obvious.
    """

    larger: str
    relation: Literal["≥", ">"]
    smaller: str
    when: str | None = None
    why: str = ""

    def holds(self, high: float, low: float) -> bool:
        return high > low or (self.relation == "≥" and high == low)


def validate(instance: Any) -> None:
    """Check every declared field of a config dataclass, then its `Ordered` rules.

    Each value goes through the check its option declares (the same function that types it on
    the command line), so `BatchPolicy(max_batch=0)` and `--max-batch 0` are refused alike;
    a value the check normalises (`"VeryFast"` → `"veryfast"`) is stored normalised. What the
    declaration says of the value's type holds from Python too: a switch (`--int8`,
    `--no-audio`, `--live`) takes True or False; a path (`option(..., path=True)`) a str or
    an `os.PathLike`, stored as its str; a section (`section`) an instance of its dataclass,
    or None where None is its default.

    Raises:
        ConfigError: naming the field, the value, what is allowed and the flag.
    """
    for f in dataclasses.fields(instance):
        given = value = getattr(instance, f.name)
        if f.metadata.get(_SECTION):
            value = _section_value(f, value)
        elif f.metadata.get(_PATH) and value is not None:
            value = path_text(f.name, value, _flags(f))
        for opt in () if f.metadata.get(_SECTION) else f.metadata.get(_OPTIONS, ()):
            if _is_switch(opt):
                _check_switch(f, value)
            elif opt.check is not None:
                value = _checked(f, opt, value)
        if value is not given and value != given:
            object.__setattr__(instance, f.name, value)
    for rule in getattr(type(instance), "RULES", ()):
        _check_rule(instance, rule)


def path_text(name: str, value: Any, flag: str = "") -> str:
    """A path given from Python (a str, or an `os.PathLike` such as `pathlib.Path`) as its str.

    Raises:
        ConfigError: `value` is neither, naming `name` (and `flag`, the option's flag).
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        return value
    raise wrong_type(name, "a path: a str or an os.PathLike such as pathlib.Path", value,
                     flag=flag)  # fmt: skip


def wrong_type(
    name: str, expected: str, value: Any, *, flag: str = "", fix: str = ""
) -> ConfigError:
    """The error for a value of the wrong type given from Python, in the words of every other
    refusal: "`name` must be `expected`, got `type value` (`flag`): `fix`"."""
    flag_text = f" ({flag})" if flag else ""
    fix_text = f": {fix}" if fix else ""
    return ConfigError(f"{name} must be {expected}, got {_got(value)}{flag_text}{fix_text}")


def _got(value: Any) -> str:
    """A value of the wrong type in a message: its type, and what it is when that is short."""
    if value is None:
        return "None"
    kind = type(value).__name__
    if isinstance(value, str | bytes | int | float | list | tuple | dict):
        text = repr(value)
        return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"
    module = type(value).__module__
    return type(value).__qualname__ if module == "builtins" else f"{module}.{kind}"


def _flags(f: dataclasses.Field) -> str:
    """The field's flags, `--live/--no-drop`; empty for a field without one."""
    return "/".join(opt.flag for opt in f.metadata.get(_OPTIONS, ()))


def _allows_none(f: dataclasses.Field) -> bool:
    return "None" in str(f.type)


def _is_switch(opt: Option) -> bool:
    return opt.kind in _SWITCHES or (opt.kind == "const" and isinstance(opt.const, bool))


def _check_switch(f: dataclasses.Field, value: Any) -> None:
    if isinstance(value, bool) or (value is None and _allows_none(f)):
        return
    either = "True, False or None" if _allows_none(f) else "True or False"
    raise wrong_type(f.name, either, value, flag=_flags(f))


def _section_value(f: dataclasses.Field, value: Any) -> Any:
    """A section's value, when it is an instance of its dataclass (a list of records: as a
    tuple), or None where None is its default."""
    cls, _group, many, _fields = f.metadata[_SECTION]
    example = f"{cls.__name__}({dataclasses.fields(cls)[0].name}=...)"
    if many:
        if isinstance(value, list | tuple) and all(isinstance(v, cls) for v in value):
            return tuple(value)
        raise wrong_type(f.name, f"a tuple of {cls.__name__}", value,
                         fix=f"{f.name}=({example},)")  # fmt: skip
    if isinstance(value, cls) or (value is None and f.default is None):
        return value
    name = cls.__name__  # "an" before a vowel, and before a spelt-out acronym: "an LlmConfig"
    spelt = name[0] in "FHLMNRSX" and name[1] in "lmnqrst"
    article = "an" if name[0] in "AEIOU" or spelt else "a"
    none = " or None" if f.default is None else ""
    raise wrong_type(f.name, f"{article} {name}{none}", value, fix=f"{f.name}={example}")


def _checked(f: dataclasses.Field, opt: Option, value: Any) -> Any:
    if value is None and _allows_none(f):
        return value
    if value is f.default or (opt.optional and value is opt.const):
        return value  # the default, or what the flag alone means (`--show`: True)
    if opt.kind == "list":
        return tuple(_one(f, opt, v) for v in value)
    return _one(f, opt, value)


def _one(f: dataclasses.Field, opt: Option, value: Any) -> Any:
    assert opt.check is not None
    text = _as_text(value)
    try:
        if text is None:
            raise ValueError(value)
        converted = opt.check.convert(text)
        if isinstance(value, str) and not isinstance(converted, str):
            raise ValueError(value)  # "5" for a number of seconds: typed wrong in Python
        return converted
    except ValueError as exc:
        raise ConfigError(
            f"{f.name} must be {opt.check.expected}, got {value!r} ({opt.flag})"
        ) from exc


def _kind(value: Any) -> str:
    """What a value that is no scalar is, in a message."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a switch value)"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return "a date or time"
    return "null" if value is None else type(value).__name__


def _number_text(value: int | float) -> str:
    return repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)


def _as_text(value: Any) -> str | None:
    """A Python value as the text a user would type for it; None when it is no such value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, int | str):
        return str(value)
    return None


def _check_rule(instance: Any, rule: Ordered) -> None:
    if rule.when is not None and not getattr(instance, rule.when):
        return
    high, low = getattr(instance, rule.larger), getattr(instance, rule.smaller)
    if high is None or low is None or rule.holds(high, low):
        return
    when = f" with {rule.when}" if rule.when else ""
    why = f" ({rule.why})" if rule.why else ""
    raise ConfigError(
        f"{rule.larger} must be {rule.relation} {rule.smaller} ({low:g}){when}{why}, "
        f"got {high:g}{_flag_of(instance, rule.larger)}"
    )


def _flag_of(instance: Any, name: str) -> str:
    for f in dataclasses.fields(instance):
        if f.name == name and f.metadata.get(_OPTIONS):
            return f" ({f.metadata[_OPTIONS][0].flag})"
    return ""
