"""`streamer archive info|prune DIR`: what an archive holds, and its retention on demand.

    streamer archive info DIR            streams, time span, rows, disk use, oldest/newest
    streamer archive prune DIR --retain 7d [--archive-max-gb 50]

`prune` deletes whole recording segments (oldest first, never one being written) and the index
rows that go with them; it takes the archive's writer lock, so it refuses while a run writes
the archive (that run applies its own `--retain`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from streamer.cli.exits import EXIT_OK, report
from streamer.cli.flags import add_options
from streamer.errors import ConfigError

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `archive` (with `info` and `prune`) on the `streamer` command's subparsers."""
    parser = commands.add_parser("archive", help="show or prune an archive (--archive DIR)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = actions.add_parser("info", help="streams, time span, rows and disk use")
    info.add_argument("path", metavar="DIR", help="the archive")
    info.add_argument("--json", action="store_true", help="print JSON for scripts")
    info.set_defaults(handler=info_command)
    prune = actions.add_parser("prune", help="delete what --retain / --archive-max-gb drop")
    prune.add_argument("path", metavar="DIR", help="the archive")
    add_options(prune, ["retain", "archive-max-gb"], defaults=True)
    prune.set_defaults(handler=prune_command)


def info_command(args: argparse.Namespace) -> int:
    """Print what the archive holds; returns the exit code."""
    from streamer.archive import Archive

    try:
        info = Archive(args.path).info()
    except Exception as exc:
        return report(exc)
    data = _info_dict(info)
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"{data['path']}: {data['encoder']}, {data['rows']} moments, index "
          f"{_mb(info.index_bytes)}, recordings {_mb(info.recordings_bytes)}")  # fmt: skip
    print(f"  from {data['oldest'] or '-'} to {data['newest'] or '-'}"
          f"{'; ANN index' if info.vector_index else ''}")  # fmt: skip
    for stream in data["streams"]:
        media = f"{stream['first_media']:.1f}-{stream['last_media']:.1f} s"
        print(f"  {stream['stream']}: {stream['rows']} moments, {stream['first']} .. "
              f"{stream['last']} (media {media})")  # fmt: skip
    return EXIT_OK


def prune_command(args: argparse.Namespace) -> int:
    """Apply retention to an archive no run is writing; returns the exit code."""
    from streamer.archive import Archive
    from streamer.archive.retention import apply_retention
    from streamer.archive.store import check_writable

    try:
        if args.retain is None and args.archive_max_gb is None:
            raise ConfigError("archive prune needs --retain DURATION and/or --archive-max-gb GB")
        archive = Archive(args.path)
        check_writable(archive.root, "prune")
        try:
            pruned = apply_retention(archive, retain_s=args.retain, max_gb=args.archive_max_gb)
        finally:
            archive.close()
    except Exception as exc:
        return report(exc)
    print(f"{args.path}: removed {pruned.segments} segments ({_mb(pruned.segment_bytes)}), "
          f"{pruned.rows} moments and {pruned.clips} alert clips")  # fmt: skip
    return EXIT_OK


def _info_dict(info: Any) -> dict[str, Any]:
    encoder = info.meta.encoder
    return {
        "path": str(info.root), "encoder": encoder.describe(), "rows": info.rows,
        "index_bytes": info.index_bytes, "recordings_bytes": info.recordings_bytes,
        "oldest": _iso(info.oldest), "newest": _iso(info.newest),
        "vector_index": info.vector_index,
        "streams": [
            {"stream": s.stream, "rows": s.rows, "first": _iso(s.first_wall),
             "last": _iso(s.last_wall), "first_media": s.first_media,
             "last_media": s.last_media}
            for s in info.streams
        ],
    }  # fmt: skip


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return dt.datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
