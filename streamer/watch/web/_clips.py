"""The archive's alert clips over HTTP: `GET /archive/clips/{stream}/{file}`, from `DIR/clips`.

The viewer's one route that opens a file the request names, so it names only what it may: a
stream folder and a file name of letters, digits, `_`, `.` and `-` (as the archive names its
clips), not hidden, the file an `.mp4` that is not one being written (`.part.mp4`), and the
path, symlinks resolved, inside `DIR/clips`. Anything else is a 404, as a missing clip is.

aiohttp's `FileResponse` serves it: Range requests (a `<video>` seeks with them), HEAD,
`ETag` and `Last-Modified`. The token rules are the viewer's: its middleware guards every
route, this one included.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["CLIP_ROUTE", "archive_dir_of", "clip_handler"]

CLIP_ROUTE = "/archive/clips/{stream}/{file}"
_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
_CLIPS = "clips"


def archive_dir_of(run: Any) -> str | None:
    """The archive directory of a run with `--archive` (`run.config.archive.path`), else None."""
    archive = getattr(getattr(run, "config", None), "archive", None)
    return getattr(archive, "path", None)


def clip_handler(
    archive_dir: Callable[[], str | None],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler of `CLIP_ROUTE`.

    Args:
        archive_dir: returns the archive directory whose clips are served (None: no archive,
            every clip is a 404).
    """

    async def serve(request: web.Request) -> web.StreamResponse:
        stream, file = request.match_info["stream"], request.match_info["file"]
        root = archive_dir()
        if root is None:
            raise web.HTTPNotFound(text="this viewer keeps no clips: the run has no --archive DIR")
        path = _clip_path(Path(root) / _CLIPS, stream, file)
        if path is None:
            raise web.HTTPNotFound(
                text=f"no clip {stream}/{file} (yet? an alert's clip is cut once its stream is "
                "recorded --clip-after past the alert); /api/alerts lists the clips"
            )
        return web.FileResponse(path, headers={"Cache-Control": "private, no-cache"})

    return serve


def _clip_path(folder: Path, stream: str, file: str) -> Path | None:
    """The clip's file when the names are a clip's and it exists inside `folder`, else None."""
    if not (_NAME.match(stream) and _NAME.match(file)):
        return None
    if not file.endswith(".mp4") or file.endswith(".part.mp4"):
        return None
    folder = folder.resolve()
    path = (folder / stream / file).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    return path
