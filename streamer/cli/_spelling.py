"""Which known word a mistyped one meant: the one rule behind every "did you mean" of the
command line and of a configuration file, so a slip gets the same hint in either place."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = ["closest", "slip"]


def closest(typed: str, known: Sequence[str]) -> str | None:
    """The known word `typed` most likely means, or None when none is close enough.

    A hint is given for a slip of a letter (`slip`) or a close spelling (a similarity ratio of
    at least 0.75), not for any word that shares a few letters ("blah" is not "batch").
    """
    near = difflib.get_close_matches(typed, list(known), n=1, cutoff=0.6)
    close = [word for word in near if slip(typed, word) or _ratio(typed, word) >= 0.75]
    return close[0] if close else None


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
