"""Which known word a mistyped one meant: the one rule behind every "did you mean" of the
command line, a configuration file and the stream API, so a slip gets the same hint in each."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = ["closest", "slip"]


def closest(typed: str, known: Sequence[str]) -> str | None:
    """The known word `typed` most likely means, or None when none is close enough.

    Of the words difflib finds alike, the first that is a slip of a letter (`slip`), a close
    spelling (a similarity ratio of at least 0.75), two edits away in a word of five letters or
    more ("lable" for "labels"), or a slip of a key's leading dash-parts ("analyse" for
    "analyze-fps"). Not any word that shares a few letters ("blah" is not "batch").
    """
    for word in difflib.get_close_matches(typed, list(known), n=3, cutoff=0.6):
        if (
            slip(typed, word)
            or _ratio(typed, word) >= 0.75
            or (min(len(typed), len(word)) >= 5 and _edits(typed, word) <= 2)
            or _slips_a_head(typed, word)
        ):
            return word
    return None


def _slips_a_head(typed: str, key: str) -> bool:
    """`typed` is the first dash-parts of `key` (four letters or more), or a slip of them."""
    parts = key.split("-")
    heads = ("-".join(parts[:i]) for i in range(1, len(parts)))
    return any(len(head) >= 4 and (typed == head or slip(typed, head)) for head in heads)


def _edits(a: str, b: str) -> int:
    """Letters inserted, deleted, replaced or two neighbours swapped to turn `a` into `b`
    (the optimal string alignment distance)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def slip(typed: str, key: str) -> bool:
    """One letter wrong, missing or extra, or two neighbours swapped ("ulr" for "url")."""
    if len(typed) == len(key):
        wrong = [i for i, (a, b) in enumerate(zip(typed, key, strict=True)) if a != b]
        swapped = len(wrong) == 2 and wrong[1] == wrong[0] + 1 and typed[wrong[0]] == key[wrong[1]]
        return len(wrong) <= 1 or (swapped and typed[wrong[1]] == key[wrong[0]])
    longer, shorter = (typed, key) if len(typed) > len(key) else (key, typed)
    return len(longer) == len(shorter) + 1 and any(
        longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer))
    )
