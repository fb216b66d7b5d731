"""A generated table kept between two markers of README.md: print it, write it, check it.

`scripts/flag_table.py` (every option of `streamer run`) and `scripts/error_table.py` (the
error tree and its exit codes) each make their table and hand it to `ReadmeTable`, which
knows the markers and runs the command line both share:

    python scripts/NAME_table.py            # print the table (markdown)
    python scripts/NAME_table.py --write    # put it into README.md between its markers
    python scripts/NAME_table.py --check    # exit 1 when README.md's table is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ReadmeTable:
    """One generated table of the README.

    Attributes:
        what: its name in messages ("flag table").
        begin, end: the markers around it in README.md.
        regenerate: the command that rewrites it.
        make: builds the table's markdown.
    """

    what: str
    begin: str
    end: str
    regenerate: str
    make: Callable[[], str]

    def in_readme(self, text: str) -> str | None:
        """The table between the markers of README text, or None when they are missing."""
        start, end = text.find(self.begin), text.find(self.end)
        if start < 0 or end < start:
            return None
        return text[start + len(self.begin) : end].strip("\n") + "\n"

    def replaced(self, text: str, table: str) -> str:
        """README text with the part between the markers replaced by `table`."""
        start, end = text.find(self.begin), text.find(self.end)
        if start < 0 or end < start:
            raise SystemExit(
                f"README has no {self.begin!r} ... {self.end!r} markers; add them where it goes"
            )
        return text[: start + len(self.begin)] + "\n" + table + text[end:]

    def main(self, argv: list[str] | None, description: str) -> int:
        """The command line of a table script; returns its exit code."""
        cli = argparse.ArgumentParser(description=description)
        mode = cli.add_mutually_exclusive_group()
        mode.add_argument("--write", action="store_true", help="update the README in place")
        mode.add_argument("--check", action="store_true", help="exit 1 if the README differs")
        cli.add_argument("--readme", type=Path, default=REPO / "README.md", help="README to use")
        args = cli.parse_args(argv)
        table = self.make()
        if not (args.write or args.check):
            sys.stdout.write(table)
            return 0
        text = args.readme.read_text(encoding="utf-8")
        if args.write:
            args.readme.write_text(self.replaced(text, table), encoding="utf-8")
            return 0
        if self.in_readme(text) != table:
            print(f"{args.readme}: the {self.what} is out of date; run: {self.regenerate}",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
