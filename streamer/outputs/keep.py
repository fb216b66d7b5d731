"""Outputs of a stream that starts again, kept beside its new ones (`NAME.keep-N.EXT`).

A live stream restarted on another node (`--cluster`), with a new input (a reload), added
again under its name, or in a new run of the same configuration (a service restarted) writes
the same output paths again; what its earlier run wrote is moved out of the way first, so that
nothing is lost.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from streamer.outputs.options import STDOUT

__all__ = ["keep_outputs"]

log = logging.getLogger("streamer")


def keep_outputs(stream: str, paths: Iterable[str]) -> list[str]:
    """Move `stream`'s outputs at `paths` to `ROOT.keep-N.EXT`, N the first number none of
    them has yet (a restart that wrote nothing leaves no gap); a path not there is skipped.
    Returns where the moved ones went."""
    split = [os.path.splitext(path) for path in paths if path != STDOUT]
    keep = 1
    while any(os.path.exists(f"{root}.keep-{keep}{ext}") for root, ext in split):
        keep += 1
    kept = []
    # An empty file holds nothing to keep (a stream that never got a frame, a failed start).
    for root, ext in [(root, ext) for root, ext in split if _written(root + ext)]:
        try:
            os.replace(root + ext, f"{root}.keep-{keep}{ext}")
            kept.append(f"{root}.keep-{keep}{ext}")
            log.info("%s: %s from before is kept as %s", stream, root + ext, kept[-1])
        except FileNotFoundError:
            continue  # never begun, or written on another machine's disk
        except OSError as exc:
            log.warning("%s: cannot keep %s (%s); it is written over", stream, root + ext, exc)
    return kept


def _written(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:  # not there: nothing to keep
        return False
