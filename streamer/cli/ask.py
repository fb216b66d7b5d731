"""`streamer ask`: a question about an archive, answered by the LLM citing the moments it saw.

    streamer ask "when did the delivery van arrive?" --archive DIR [--stream S] [--since 1d ago]
    streamer ask "..." --archive DIR --no-llm        # the moments and summaries found, no LLM
    streamer ask "..." --archive DIR --json          # for scripts

The best moments (hybrid search, as `streamer search`) and the summaries around them go to the
LLM, whose answer cites them; the answer is printed with each citation written out as
`[stream @ time]`, then the moments (`*` marks the cited ones) and summaries it was given. The
LLM options are `streamer run`'s (`--llm-url`, `--llm-model`, `--llm-api-key`).

Exit codes: 0 an answer (or, with `--no-llm`, the moments); 1 no answer: the LLM server is down
or failed (the message names its URL and the fix; the moments found are still printed), or
nothing in the archive matches; 2 bad usage (an empty question, `--since` after `--until`, an
unknown stream).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from streamer.archive.evidence import stretch_label
from streamer.cli.exits import EXIT_ERROR, EXIT_OK, report
from streamer.cli.flags import add_options, dest
from streamer.cli.options import TABLE
from streamer.core.checks import int_at_least
from streamer.core.samples import export_cache_dir

__all__ = ["add_llm_options", "add_parser", "ask_command", "llm_config_of"]

_PROG = "streamer ask"
#: The LLM options borrowed from `streamer run` (declared once, on `LlmConfig`).
_LLM_FIELDS = ("llm.url", "llm.model", "llm.api_key")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `ask` on the `streamer` command's subparsers."""
    parser = commands.add_parser(
        "ask",
        help="answer a question from an archive, citing the moments it comes from",
        description="Answer a question from an archive (streamer run --archive DIR): the best "
        "moments and the summaries around them go to the LLM, which cites them as "
        "[stream @ time]. Exit 0: answered; 1: no answer (server down, nothing found; the "
        "moments still print); 2: bad usage.",
    )
    parser.add_argument("question", nargs="?", default="", help="the question, in words")
    parser.add_argument("--archive", required=True, metavar="DIR", help="the archive")
    parser.add_argument("--stream", help="only this stream")
    parser.add_argument("--since", metavar="TIME", help="not before (ISO time or '2h ago')")
    parser.add_argument("--until", metavar="TIME", help="not after (ISO time or '10m ago')")
    parser.add_argument(
        "-k", type=int_at_least(1), default=8, help="moments given to the LLM (default: 8)"
    )
    parser.add_argument("--no-llm", action="store_true", help="print the moments; ask no LLM")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--device", help="where the archive's encoder runs (default: cuda if any)")
    add_llm_options(parser)
    parser.set_defaults(handler=ask_command)


def add_llm_options(parser: argparse.ArgumentParser) -> None:
    """`streamer run`'s --llm-url, --llm-model and --llm-api-key (declared on `LlmConfig`),
    for a command that asks questions (`ask`, `serve`)."""
    add_options(parser, [_row(path).option.key for path in _LLM_FIELDS], defaults=True)


def _row(path: str) -> Any:
    return next(row for row in TABLE if row.path == path)


def llm_config_of(args: argparse.Namespace) -> Any:
    """The `LlmConfig` of the options `add_llm_options` added."""
    from streamer.llm import LlmConfig

    values = {path.split(".", 1)[1]: getattr(args, dest(_row(path))) for path in _LLM_FIELDS}
    return LlmConfig(**values)


def ask_command(args: argparse.Namespace) -> int:
    """Ask, print the answer and its evidence; returns the exit code."""
    from streamer.archive import Archive

    try:
        llm = None if args.no_llm else llm_config_of(args)
        archive = Archive(args.archive, device=args.device, export_cache=export_cache_dir())
        answer = archive.ask(
            args.question, llm=llm, k=args.k, stream=args.stream, since=args.since,
            until=args.until,
        )  # fmt: skip
    except Exception as exc:
        return report(exc, _PROG)
    failed = answer.text is None and not args.no_llm
    if failed:
        print(f"{_PROG}: no answer: {answer.error}", file=sys.stderr)
        if answer.hits:
            print(f"{_PROG}: the moments found are below; --llm-url URL asks another server, "
                  "--no-llm skips the LLM", file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps(_as_json(answer), indent=2, ensure_ascii=False))
    else:
        _print(answer)
    return EXIT_ERROR if failed else EXIT_OK


def _print(answer: Any) -> None:
    rendered = answer.render()
    if rendered is not None:
        print(rendered)
        print()
    cited = {c.number for c in answer.citations}
    if answer.hits:
        print("moments:")
    for n, hit in enumerate(answer.hits, 1):
        moment = hit.moment
        caption = f'  "{moment.caption}"' if moment.caption else ""
        tags = ", ".join(label for label, _ in moment.tags[:3])
        alerts = f"  alerts: {', '.join(moment.alerts)}" if moment.alerts else ""
        mark = "*" if n in cited else " "
        print(f"{n:>3}{mark} {answer.label(n)}{caption}  ({tags}){alerts}")
    if answer.summaries:
        print("summaries:")
    for summary in answer.summaries:
        print(f"  {stretch_label(summary)}: {' '.join(summary.text.split())}")
    if not answer.hits and not answer.summaries:
        print("no moments found", file=sys.stderr)


def _as_json(answer: Any) -> dict[str, Any]:
    cited = {c.number for c in answer.citations}
    return {
        "question": answer.question,
        "answer": answer.render(),
        "text": answer.text,
        "error": answer.error,
        "citations": [
            {"number": c.number, "stream": c.stream, "wall_time": _iso(c.wall_time),
             "media_time": round(c.media_time, 3), "label": answer.label(c.number)}
            for c in answer.citations
        ],
        "moments": [
            {"number": n, "stream": h.moment.stream, "wall_time": _iso(h.moment.wall_time),
             "media_time": round(h.moment.media_time, 3), "score": round(h.score, 5),
             "caption": h.moment.caption, "tags": [label for label, _ in h.moment.tags],
             "alerts": list(h.moment.alerts), "media_path": h.moment.media_path,
             "cited": n in cited}
            for n, h in enumerate(answer.hits, 1)
        ],
        "summaries": [
            {"stream": s.stream, "kind": s.kind, "start_wall": _iso(s.start_wall),
             "end_wall": _iso(s.end_wall), "text": s.text}
            for s in answer.summaries
        ],
    }  # fmt: skip


def _iso(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")
