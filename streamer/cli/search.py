"""`streamer search`: the best moments of an archive for words or a picture.

    streamer search "a red van at the gate" --archive DIR [--stream S] [--since 2h ago]
    streamer search --image photo.jpg --archive DIR --clips OUT/ --before 5s --after 10s

Each hit prints its stream, time, similarity, caption and thumbnail (written under `--thumbnails`,
by default a folder of the user's cache that keeps a week of them); `--json` prints the same for
scripts; `--clips OUT/` cuts a clip around each hit (by stream copy where the keyframes allow).
The archive's own encoder (recorded in its `archive.json`) embeds the query, so the search needs
no run.

A hit whose media is not where the index says (a file moved or changed since it was indexed, a
recording pruned or cut short by a crash) says so: `media_state` in `--json`, a note on its
line; no clip is cut of what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from streamer.cli.exits import EXIT_OK, report
from streamer.core.checks import duration_above, int_at_least, why_unwritable
from streamer.core.samples import cache_dir, export_cache_dir
from streamer.errors import ConfigError

__all__ = ["add_parser", "search_command"]

#: The cache's thumbnails older than this go at the next search (`--thumbnails DIR` is kept).
CACHED_THUMBNAILS_S = 7 * 86400.0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `search` on the `streamer` command's subparsers."""
    parser = commands.add_parser(
        "search",
        help="find moments in an archive by words or by a picture",
        description="The best moments of an archive (streamer run --archive DIR) for words "
        "(what a moment looks like, or what its caption says) or for a picture.",
    )
    parser.add_argument("text", nargs="?", help="what to look for, in words")
    parser.add_argument("--archive", required=True, metavar="DIR", help="the archive")
    parser.add_argument("--image", metavar="FILE", help="look for moments like this picture")
    parser.add_argument("--stream", help="only this stream")
    parser.add_argument("--since", metavar="TIME", help="not before (ISO time or '2h ago')")
    parser.add_argument("--until", metavar="TIME", help="not after (ISO time or '10m ago')")
    parser.add_argument(
        "--tag",
        help="only moments with this tag among their top tags (the whole label, in any case)",
    )
    parser.add_argument("-k", type=int_at_least(1), default=10, help="how many (default: 10)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--thumbnails", metavar="DIR",
        help="write the hits' thumbnails here (default: the cache's search/ folder, which "
             "keeps a week of them)",
    )  # fmt: skip
    parser.add_argument("--clips", metavar="DIR", help="cut a clip around each hit into DIR")
    parser.add_argument(
        "--before", type=duration_above(0), default=5.0, metavar="DURATION",
        help="a clip starts this long before its moment (default: 5s)",
    )  # fmt: skip
    parser.add_argument(
        "--after", type=duration_above(0), default=10.0, metavar="DURATION",
        help="a clip ends this long after its moment (default: 10s)",
    )  # fmt: skip
    parser.add_argument("--device", help="where the archive's encoder runs (default: cuda if any)")
    parser.set_defaults(handler=search_command)


def search_command(args: argparse.Namespace) -> int:
    """Search, print the hits, write thumbnails and clips; returns the exit code."""
    from streamer.archive import Archive

    try:
        _check_folders(args)
        if not args.thumbnails:
            _forget_old_thumbnails(_thumbnails(args))
        archive = Archive(args.archive, device=args.device, export_cache=export_cache_dir())
        hits = archive.search(
            args.text, image=args.image, stream=args.stream, since=args.since,
            until=args.until, tag=args.tag, k=args.k,
        )  # fmt: skip
        rows = [_row(i, hit, args) for i, hit in enumerate(hits, 1)]
    except Exception as exc:
        return report(exc)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for row in rows:
            print(_line(row))
        if not rows:
            print("no moments found", file=sys.stderr)
    return EXIT_OK


def _check_folders(args: argparse.Namespace) -> None:
    """Refuse, before the search, folders of thumbnails and clips that cannot be written.

    Raises:
        ConfigError: `--clips` or `--thumbnails` (or the cache, its default) names a folder
            that cannot be made or written.
    """
    fixes = {
        "--clips": "give --clips a folder this user can write",
        "--thumbnails": "give --thumbnails a folder this user can write"
        + ("" if args.thumbnails else ", or point XDG_CACHE_HOME at one"),
    }
    for flag, folder in (("--clips", args.clips), ("--thumbnails", _thumbnails(args))):
        why = folder and why_unwritable(folder)
        if why:
            raise ConfigError(f"{flag} {folder}: cannot write there ({why}); {fixes[flag]}")


def _forget_old_thumbnails(folder: Path) -> None:
    """Remove the cache's thumbnails of hits last shown more than `CACHED_THUMBNAILS_S` ago: a
    hit shown again rewrites its file, so what goes is what no search has returned lately."""
    cutoff = time.time() - CACHED_THUMBNAILS_S
    for path in folder.glob("*.jpg"):
        with contextlib.suppress(OSError):  # gone already: another search removed it
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _thumbnails(args: argparse.Namespace) -> Path:
    return Path(args.thumbnails) if args.thumbnails else cache_dir() / "search"


def _row(rank: int, hit: Any, args: argparse.Namespace) -> dict[str, Any]:
    moment = hit.moment
    folder = _thumbnails(args)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{moment.stream}-{moment.wall_time:.3f}"
    thumbnail = hit.save_thumbnail(folder / f"{name}.jpg")
    row = {
        "rank": rank, "stream": moment.stream, "media_time": round(moment.media_time, 3),
        "wall_time": _iso(moment.wall_time), "score": round(hit.score, 5),
        "similarity": None if hit.similarity is None else round(hit.similarity, 4),
        "caption": moment.caption, "caption_source": moment.caption_source,
        "tags": [[label, round(score, 4)] for label, score in moment.tags],
        "alerts": list(moment.alerts), "media_path": moment.media_path,
        "media_state": hit.media_state, "media": hit.media,
        "media_offset": None if hit.media_offset is None else round(hit.media_offset, 3),
        "thumbnail": str(thumbnail) if thumbnail else None, "clip": None,
    }  # fmt: skip
    if args.clips and hit.media_state != "missing":
        row["clip"] = str(_clip(args, hit, Path(args.clips) / f"{name}.mp4"))
    elif args.clips:
        print(f"{moment.stream} @ {row['wall_time']}: no clip, its media is missing",
              file=sys.stderr)  # fmt: skip
    return row


def _clip(args: argparse.Namespace, hit: Any, out: Path) -> Path:
    from streamer.archive.clips import clip_of_hit

    return clip_of_hit(args.archive, hit, out, before=args.before, after=args.after).path


def _line(row: dict[str, Any]) -> str:
    caption = f'  "{row["caption"]}"' if row["caption"] else ""
    where = f"{row['stream']} @ {row['wall_time']} (media {row['media_time']:.1f} s)"
    extras = [f"thumbnail {row['thumbnail']}"] if row["thumbnail"] else []
    if row["media_state"] not in (None, "ok"):
        extras.insert(0, _MEDIA_NOTES[row["media_state"]].format(row["media"]))
    if row["clip"]:
        extras.append(f"clip {row['clip']}")
    tail = f"  [{'; '.join(extras)}]" if extras else ""
    # The cosine similarity says how well it matched; the fused score only orders the hits
    # (it is 1/(60 + rank) summed over the lists a hit is in, whatever the query).
    similarity = row["similarity"]
    match = f"similarity {similarity:.3f}" if similarity is not None else "words match"
    return f"{row['rank']:>2}. {where}  {match}{caption}{tail}"


_MEDIA_NOTES = {
    "missing": "media missing: its file or recording is gone",
    "moved": "file moved: found at {}",
    "changed": "file changed since it was indexed: times may be off",
}


def _iso(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")
