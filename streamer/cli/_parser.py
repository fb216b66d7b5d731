"""The parser class of every `streamer` command: a word it does not know is refused by the
(sub)command that was given it, with that command's usage line and a hint for a slip.

Plain argparse leaves a subcommand's unknown words to the top-level parser, which prints
``usage: streamer [-h] ...`` and "unrecognized arguments". Here the subcommand that received
them refuses them itself: ``usage: streamer run ...`` and ``unknown option --jsnl: did you
mean --jsonl?``, the hint chosen by the rule of a configuration file's unknown keys
(`streamer.core.spelling`). The exit code stays 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from streamer.core.spelling import closest

__all__ = ["Parser", "unknown_words"]


class Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose subcommands (and theirs) refuse their own unknown
    words; its subcommands are made of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(unknown_words(self, extras))
        return parsed


class _Commands(argparse._SubParsersAction):
    """The subcommands of a `Parser`: the chosen one refuses the words it has no use for."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        before = len(getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, []))
        super().__call__(parser, namespace, values, option)
        extras = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, [])[before:]
        if extras:
            command = self._name_parser_map[values[0]]
            command.error(unknown_words(command, extras))


def unknown_words(parser: argparse.ArgumentParser, words: Sequence[str]) -> str:
    """Why `parser` refuses `words`: each unknown option, with the flag it likely means
    ("unknown option --jsnl: did you mean --jsonl?"); without one, the stray words.

    Beside an unknown option the other words are not named: they are likely its value, and the
    option is what to fix.
    """
    flags = [s[2:] for s in parser._option_string_actions if s.startswith("--")]
    unknown = []
    for word in words:
        if not _looks_like_option(word):
            continue
        given = word.split("=", 1)[0]
        meant = closest(given.lstrip("-").lower(), flags)  # every flag is lower case
        unknown.append(f"unknown option {given}" + (f": did you mean --{meant}?" if meant else ""))
    return "; ".join(unknown) or f"unrecognized arguments: {' '.join(words)}"


def _looks_like_option(word: str) -> bool:
    """`--jsnl`, `-x`, `--jsnl=a.jsonl`; not `-` (standard output), `--` (the end of the
    options) nor a number (`-1`, `-.5`)."""
    return (
        word.startswith("-")
        and word not in ("-", "--")
        and not word[1].isdigit()
        and word[1] != "."
    )
