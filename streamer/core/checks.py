"""Checked value types for the options of a run: each converts one value and says what is allowed.

A bad value should be reported in the words the user typed. On the command line a check is the
flag's argparse `type`, and argparse prints its `ArgumentTypeError` as ``argument --max-batch:
must be a whole number ≥ 1, got '0'``; a configuration file runs the same check on its value, so
its error names the key instead: ``analysis.max-batch = 0: must be a whole number ≥ 1, got
'0'``; and a config dataclass runs it on the value it is given (`streamer.core.options.validate`),
so the Python API refuses ``BatchPolicy(max_batch=0)`` in the same words. One check, three front
doors, and each reports the value before anything else is looked at (a missing output, say).

Every checker here is a `Checked`: a callable with `expected`, the allowed values in words,
which the configuration file also uses when a value has the wrong TOML type altogether (a list,
a boolean).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from streamer.errors import ConfigError

__all__ = [
    "Checked",
    "duration_above",
    "float_above",
    "float_at_least",
    "float_in",
    "http_url",
    "int_at_least",
    "int_in",
    "int_or_auto",
    "one_of",
    "one_of_registered",
    "rate_or_all",
    "seconds_of",
    "serve_address",
    "split_serve_address",
    "template_with",
    "text_or_file",
    "torch_device",
    "why_unwritable",
]

T = TypeVar("T")

_WHOLE = re.compile(r"[+-]?\d+")


class Checked(Generic[T]):
    """An argparse `type` that converts a value, or rejects it naming what is allowed.

    Args:
        expected: the allowed values in words, completing "must be ..." ("a whole number ≥ 1"),
            or a function that says them when asked (values that can change: registered kinds).
        convert: text → value; raises ValueError for any value that is not allowed.
    """

    def __init__(self, expected: str | Callable[[], str], convert: Callable[[str], T]) -> None:
        self._expected = expected
        self._convert = convert
        # argparse names a type by its __name__ when a conversion fails without a message.
        self.__name__ = "value"

    @property
    def expected(self) -> str:
        """The allowed values in words."""
        return self._expected() if callable(self._expected) else self._expected

    def convert(self, text: str) -> T:
        """The value `text` stands for; ValueError when it is not allowed."""
        return self._convert(str(text).strip())

    def __call__(self, text: str) -> T:
        """As an argparse `type`: the value, or `ArgumentTypeError` in the words above."""
        try:
            return self.convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"must be {self.expected}, got {text!r}") from exc

    def __repr__(self) -> str:
        return f"Checked({self.expected!r})"


def _whole(text: str) -> int:
    if not _WHOLE.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _finite(text: str, allow_inf: bool = False) -> float:
    value = float(text)  # ValueError for text that is no number
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(text)
    return value


def _require(ok: bool, text: str) -> None:
    if not ok:
        raise ValueError(text)


def _of(unit: str) -> str:
    return f"a number of {unit}" if unit else "a number"


def int_at_least(low: int) -> Checked[int]:
    """A whole number ≥ `low` (`--max-batch`: 1)."""

    def convert(text: str) -> int:
        value = _whole(text)
        _require(value >= low, text)
        return value

    return Checked(f"a whole number ≥ {low}", convert)


def int_in(low: int, high: int) -> Checked[int]:
    """A whole number in `low`..`high`, both included (`--crf`: 0..51)."""

    def convert(text: str) -> int:
        value = _whole(text)
        _require(low <= value <= high, text)
        return value

    return Checked(f"a whole number in {low}..{high}", convert)


def int_or_auto(low: int) -> Checked[int | str]:
    """A whole number ≥ `low`, or "auto" (any case), returned as "auto"."""

    def convert(text: str) -> int | str:
        if text.lower() == "auto":
            return "auto"
        value = _whole(text)
        _require(value >= low, text)
        return value

    return Checked(f"a whole number ≥ {low} or 'auto'", convert)


def float_at_least(low: float, unit: str = "", *, allow_inf: bool = False) -> Checked[float]:
    """A number ≥ `low`, e.g. of seconds ≥ 0; finite unless `allow_inf` ("never")."""

    def convert(text: str) -> float:
        value = _finite(text, allow_inf)
        _require(value >= low, text)
        return value

    return Checked(f"{_of(unit)} ≥ {low:g}", convert)


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")


def seconds_of(text: str) -> float:
    """`"90"`, `"90s"`, `"10m"`, `"2h"`, `"7d"`, `"1h30m"` → seconds; ValueError otherwise."""
    text = text.strip().lower()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(text)
    if any(unit not in _UNITS for _, unit in parts):
        raise ValueError(text)
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def duration_above(low: float) -> Checked[float]:
    """A duration > `low` seconds, in seconds: `60`, `60s`, `10m`, `2h`, `7d`, `1h30m`."""

    def convert(text: str) -> float:
        value = seconds_of(text)
        _require(math.isfinite(value) and value > low, text)
        return value

    return Checked(f"a duration > {low:g} s, e.g. 60s, 10m, 2h, 7d", convert)


def float_above(low: float, unit: str = "") -> Checked[float]:
    """A finite number > `low`, e.g. a number of seconds > 0."""

    def convert(text: str) -> float:
        value = _finite(text)
        _require(value > low, text)
        return value

    return Checked(f"{_of(unit)} > {low:g}", convert)


def float_in(
    low: float, high: float, what: str = "a number", *, low_open: bool = False
) -> Checked[float]:
    """A number in `low`..`high` (`low` itself excluded when `low_open`)."""

    def convert(text: str) -> float:
        value = _finite(text)
        _require((value > low if low_open else value >= low) and value <= high, text)
        return value

    span = f"> {low:g} and ≤ {high:g}" if low_open else f"in {low:g}..{high:g}"
    return Checked(f"{what} {span}", convert)


def one_of(*values: str) -> Checked[str]:
    """One of `values`, in any case; the value as listed is returned."""
    canonical = {v.lower(): v for v in values}

    def convert(text: str) -> str:
        _require(text.lower() in canonical, text)
        return canonical[text.lower()]

    return Checked("one of " + ", ".join(values), convert)


def one_of_registered(values: Callable[[], Iterable[str]]) -> Checked[str]:
    """One of the values `values()` gives when the check runs, in any case (`--encoder`: the
    encoder families registered by then)."""

    def convert(text: str) -> str:
        canonical = {v.lower(): v for v in values()}
        _require(text.lower() in canonical, text)
        return canonical[text.lower()]

    return Checked(lambda: "one of " + ", ".join(values()), convert)


def rate_or_all() -> Checked[float | str]:
    """`--analyze-fps`: frames per second > 0, or "all" (every frame)."""

    def convert(text: str) -> float | str:
        if text.lower() == "all":
            return "all"
        value = _finite(text)
        _require(value > 0, text)
        return value

    return Checked("a number of frames per second > 0, or 'all'", convert)


def template_with(field: str) -> Checked[str]:
    """A text template that contains `{field}` (`--label-prompt`: "a photo of {label}")."""

    def convert(text: str) -> str:
        _require("{" + field + "}" in text, text)
        return text

    return Checked(f"a text with '{{{field}}}' where the {field} goes", convert)


def http_url() -> Checked[str]:
    """An http:// or https:// URL with a host (`--llm-url`)."""

    def convert(text: str) -> str:
        parts = urlsplit(text)
        _require(parts.scheme.lower() in ("http", "https") and bool(parts.hostname), text)
        return text

    return Checked("an http:// or https:// URL with a host, e.g. http://localhost:1234/v1", convert)


def torch_device() -> Checked[str]:
    """A device torch can name: cpu, cuda, cuda:N (mps, xpu, ... where torch has them)."""

    def convert(text: str) -> str:
        if re.fullmatch(r"cpu|cuda(:\d+)?", text):
            return text  # torch names these; asking it would import it for nothing
        import torch  # other names: as torch has them

        try:
            torch.device(text)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(text) from exc
        return text

    return Checked("a device: cpu, cuda or cuda:N", convert)


def split_serve_address(text: str, default_host: str) -> tuple[str, int]:
    """`[HOST:]PORT` → (host, port); `[IPv6]:PORT` for IPv6 hosts. ValueError when malformed."""
    text = text.strip()
    bracketed = re.fullmatch(r"\[([^\]]+)\]:(.*)", text)
    if bracketed:
        host, port = bracketed.groups()
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" not in text:
        host, port = default_host, text
    else:
        host, port = "", ""
    _require(bool(host) and port.isascii() and port.isdigit() and int(port) <= 65535, text)
    return host, int(port)


def serve_address(default_host: str) -> Checked[str]:
    """`--serve [HOST:]PORT`, checked; the text is kept as given (printed configurations
    show it as typed), and split where the run is configured."""

    def convert(text: str) -> str:
        split_serve_address(text, default_host)
        return text

    return Checked(
        "[HOST:]PORT with PORT in 0..65535 (an IPv6 HOST in brackets: [::1]:8080)", convert
    )


# One word that names a file: a path (a separator in it) or a name with an extension.
_FILE_LIKE = re.compile(r"\S*[/\\]\S*|\S+\.(txt|md|prompt|text|j2|tmpl)", re.IGNORECASE)


def text_or_file(value: str) -> str:
    """The text itself, or, when `value` names a file, the file's text (a prompt kept in a file).

    Raises:
        ConfigError: the file exists but cannot be read as UTF-8 text, or `value` is one word
            that looks like a file's path and no such file exists (a typo would otherwise be
            sent to the LLM as the prompt).
    """
    if not os.path.isfile(value):
        if _FILE_LIKE.fullmatch(value.strip()):
            raise ConfigError(
                f"{value!r} looks like a file, but there is no such file; give the path of an "
                "existing file, or the prompt's own words"
            )
        return value
    try:
        with open(value, encoding="utf-8") as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {value!r}: {exc}") from exc


def why_unwritable(path: str | os.PathLike[str]) -> str | None:
    """Why a folder cannot be written, or made where it is missing; None when it can.

    Looks at `path`, or where it is missing, at the nearest folder above it that exists (the
    one it would be made in). Changes nothing. The access check is the kernel's for this user
    (`os.access`), so root passes a folder without write permission but not a read-only file
    system.

    Returns:
        A clause for a message: "/mnt/ro is on a read-only file system", "/data/out is a
        file", "/srv/clips is not writable by this user".
    """
    target = os.path.abspath(path)
    while not os.path.lexists(target) and os.path.dirname(target) != target:
        target = os.path.dirname(target)
    if not os.path.isdir(target):
        return f"{target} is a file"
    if os.access(target, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"{target} is on a read-only file system"
    return f"{target} is not writable by this user"
