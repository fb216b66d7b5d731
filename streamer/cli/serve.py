"""`streamer serve --archive DIR`: an archive's search page in the browser, with no run.

    streamer serve --archive DIR [--serve [HOST:]PORT] [--serve-token TOKEN] [--device cpu]
                   [--llm-url URL] [--no-llm]

The page (`/search`) finds moments by words and plays each from its recording, or from its
file, at that moment (`streamer.watch.web.archive_routes`). Address and token are the viewer's
own options (`--serve`, `--serve-token`: declared once, on `RunConfig.serve` and
`ServeConfig`), with the same rules: this machine only unless told otherwise, and with a token
every route needs it. The page's questions go to `--llm-url` (as `streamer ask`'s). The
archive is only read: a run may be writing it at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from streamer.cli.ask import add_llm_options, llm_config_of
from streamer.cli.exits import EXIT_OK, report
from streamer.cli.flags import add_options
from streamer.cli.run import run_with_signals
from streamer.core.samples import export_cache_dir

__all__ = ["add_parser", "serve_command"]

DEFAULT_ADDRESS = "8080"  # --serve's own default is "no viewer"; here the page is the point


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `serve` on the `streamer` command's subparsers."""
    parser = commands.add_parser(
        "serve",
        help="search an archive in the browser (the /search page), with no run",
        description="Serve an archive's search page (/search): find moments by words, see "
        "their thumbnails, play each from its recording at that moment. The archive is only "
        f"read. --serve defaults to 127.0.0.1:{DEFAULT_ADDRESS} (this machine only).",
    )
    parser.add_argument("--archive", required=True, metavar="DIR", help="the archive")
    # The viewer's address and token, and where the (archive's) encoder runs: run's options.
    add_options(parser, ["serve", "serve-token", "device"], defaults=True)
    add_llm_options(parser)  # where the page's questions go
    parser.add_argument("--no-llm", action="store_true",
                        help="questions get the moments, no LLM answer")  # fmt: skip
    parser.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; returns the exit code (128 + the signal's number)."""
    from streamer.archive.store import read_meta
    from streamer.watch.web.archive_routes import ArchiveServer
    from streamer.watch.web.options import ServeConfig

    received: list[int] = []
    try:
        read_meta(args.archive)  # not an archive: say so now, not at the first search
        config = ServeConfig.at(args.serve or DEFAULT_ADDRESS, args.serve_token)
        llm = None if args.no_llm else llm_config_of(args)
        server = ArchiveServer(args.archive, config, device=args.device, llm=llm,
                               export_cache=export_cache_dir())  # fmt: skip

        async def serve(stop: asyncio.Event) -> None:
            await server.start()
            print(f"streamer: searching {args.archive} at {server.url}", file=sys.stderr)
            try:
                await stop.wait()
            finally:
                await server.stop()

        run_with_signals(serve, received)
    except Exception as exc:
        return report(exc)
    if received:  # as `streamer run`: 130 for Ctrl-C, 143 for SIGTERM
        return 128 + int(received[0])
    return EXIT_OK
