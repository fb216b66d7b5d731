"""Outputs of a stream that starts again, kept beside its new ones (`NAME.keep-N.EXT`).

A live stream restarted on another node (`--cluster`) or with a new input (a reload) writes
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


def keep_outputs(stream: str, paths: Iterable[str]) -> None:
    """Move `stream`'s outputs at `paths` to `ROOT.keep-N.EXT`, N the first number none of
    them has yet (a restart that wrote nothing leaves no gap); a path not there is skipped."""
    split = [os.path.splitext(path) for path in paths if path != STDOUT]
    keep = 1
    while any(os.path.exists(f"{root}.keep-{keep}{ext}") for root, ext in split):
        keep += 1
    for root, ext in split:
        try:
            os.replace(root + ext, f"{root}.keep-{keep}{ext}")
        except FileNotFoundError:
            continue  # never begun, or written on another machine's disk
        except OSError as exc:
            log.warning("%s: cannot keep %s (%s); it is written over", stream, root + ext, exc)
