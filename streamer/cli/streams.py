"""`streamer streams`: list, add, remove and change the streams of a running run, from the shell.

    streamer streams list [--json]
    streamer streams add NAME=URL [--rate R] [--label L]... [--alert QUERY]... [--captions off]
    streamer streams rm NAME
    streamer streams set NAME [--rate R] [--labels L] [--alerts [QUERY ...]] [--captions on|off]

A thin client of the run's stream API (`streamer.watch.web.stream_api`), on the viewer's
server: start the run with `--serve [HOST:]PORT --serve-token TOKEN`, then give the same
address as `--server URL` (or `STREAMER_SERVER`; default http://127.0.0.1:8080) and the token
as `--token` (or `STREAMER_TOKEN`, which keeps it out of the shell's history and `ps`), before
the action or after it (`streamer streams --server URL list`, `... list --server URL`). The
server checks every value (the same words as a configuration file's); the values checked here
are only those whose option this command borrows (`--rate` is `--analyze-fps`, the alert
settings are `streamer run`'s).

`add` waits (up to `ADD_WAIT_S`) for the new stream's first connection: an input that fails
for good (no stream at that path, credentials refused) is an error, exit 1; one that cannot be
reached yet is added and keeps retrying, as at a run's start, and the answer says why.

Exit codes: 0 done; 1 the server cannot be reached or failed (the message names its URL and
the fix), or an added stream's input failed; 2 bad usage, or the server refused the request
(its message, on one line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from streamer.cli.exits import EXIT_OK, report
from streamer.cli.flags import add_options, dest
from streamer.cli.options import TABLE
from streamer.core.checks import http_url, one_of

__all__ = ["DEFAULT_SERVER", "StreamsClient", "add_parser", "streams_command"]

_PROG = "streamer streams"
DEFAULT_SERVER = "http://127.0.0.1:8080"  # the viewer's own default port, this machine
SERVER_ENV, TOKEN_ENV = "STREAMER_SERVER", "STREAMER_TOKEN"
#: `streamer run`'s settings every alert given here gets (declared once, on `AlertRule`).
_ALERT_KEYS = ("alert-threshold", "alert-frames", "alert-cooldown")
_RATE = next(row for row in TABLE if row.path == "analysis.analyze_fps")
_COLUMNS = ("name", "source", "live", "fps", "analysed", "rate", "state")
#: How long `add` waits for a new stream to leave "connecting" (a camera's open timeout, 5 s
#: by default, and its first probe).
ADD_WAIT_S = 12.0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `streams` and its actions on the `streamer` command's subparsers."""
    parser = commands.add_parser(
        "streams",
        help="list, add, remove or change the streams of a running run (its --serve API)",
        description="The streams of a running `streamer run --serve ADDR --serve-token T`: "
        "list them, add one, remove one (its outputs are finished), change one (rate, labels, "
        "alerts, captions) without pausing the others. Exit 0: done; 1: server unreachable "
        "or failed; 2: bad usage or refused by the server.",
    )
    _add_connection(parser, default=None)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    # Given after the action too; there, one not given leaves the one before it as it is.
    _add_connection(common, default=argparse.SUPPRESS)
    listing = actions.add_parser("list", parents=[common], help="the streams and their state")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    add = actions.add_parser("add", parents=[common], help="add a stream; it starts at once")
    add.add_argument("spec", metavar="NAME=URL", help="the stream's name and source")
    _add_settings(add, labels=("--label", "labels of its own: 'dog, cat' or a file of this "
                                          "machine, one per line (repeatable)"),
                  alerts=("--alert", "a text query to alert on (repeatable)"))  # fmt: skip
    remove = actions.add_parser("rm", parents=[common], help="remove a stream (outputs finished)")
    remove.add_argument("name", help="the stream")
    change = actions.add_parser("set", parents=[common], help="change a running stream")
    change.add_argument("name", help="the stream")
    labels = "its own labels instead of those it has: 'dog, cat' or a file, one per line"
    alerts = "its whole set of alerts, replacing the one it has (none: no alert)"
    _add_settings(change, labels=("--labels", labels), alerts=("--alerts", alerts))
    parser.set_defaults(handler=streams_command)


def _add_connection(parser: argparse.ArgumentParser, default: Any) -> None:
    """`--server` and `--token`, which every action takes before its name or after it."""
    parser.add_argument("--server", type=http_url(), metavar="URL", default=default,
                        help=f"the run's viewer (default: ${SERVER_ENV}, else "
                        f"{DEFAULT_SERVER})")  # fmt: skip
    parser.add_argument("--token", default=default,
                        help=f"its --serve-token (default: ${TOKEN_ENV})")  # fmt: skip


def _add_settings(
    parser: argparse.ArgumentParser, labels: tuple[str, str], alerts: tuple[str, str]
) -> None:
    """The settings `add` and `set` share: rate, labels, alerts and their settings, captions."""
    parser.add_argument(
        "--rate",
        type=_RATE.option.check,
        metavar="FPS",
        help="analysed frames per second, > 0, or 'all' (its --analyze-fps)",
    )
    many = {"action": "append"} if labels[0] == "--label" else {}
    parser.add_argument(labels[0], dest="labels", metavar="LABELS", help=labels[1], **many)
    if alerts[0] == "--alert":
        parser.add_argument("--alert", dest="alerts", action="append", metavar="QUERY",
                            help=alerts[1])  # fmt: skip
    else:
        parser.add_argument("--alerts", nargs="*", metavar="QUERY", help=alerts[1])
    # `streamer run`'s, for the alerts given here; those not given are the run's (its server's)
    add_options(parser, _ALERT_KEYS)
    parser.add_argument("--captions", type=one_of("on", "off"), metavar="on|off",
                        help="captions for this stream (off: the LLM is not asked)")  # fmt: skip


def streams_command(args: argparse.Namespace) -> int:
    """Do the action against the run's server; returns the exit code."""
    server = (args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        # A usage error is told before the server is asked.
        body = _body(args) if args.action in ("add", "set") else None
        answer = asyncio.run(_act(args, server, token, body))
    except Exception as exc:
        return report(exc, _PROG)
    if args.action == "list":
        print(json.dumps(answer, indent=2) if args.json else _table(answer))
    elif args.action == "rm":
        print(f"removed {answer['name']}: {answer['frames']} frames, {answer['analysed']} "
              "analysed; its outputs are finished")  # fmt: skip
    else:
        print(_settings_line(answer, "added" if args.action == "add" else "changed"))
    if args.action == "add" and answer.get("state") == "failed":
        from streamer.errors import SourceError

        name = answer["name"]
        why = str(answer.get("last_error") or answer.get("error") or "no reason given")
        return report(SourceError(
            f"{name}: its input cannot be opened: {why.rstrip('. ')}. It stays listed as "
            f"failed until `streamer streams rm {name}`; then add it with the input fixed"
        ), _PROG)  # fmt: skip
    return EXIT_OK


async def _act(args: argparse.Namespace, server: str, token: str | None, body: Any) -> Any:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        client = StreamsClient(session, server, token)
        if args.action == "list":
            return await client.list()
        if args.action == "add":
            return await client.settled(await client.add(body))
        if args.action == "rm":
            return await client.remove(args.name)
        return await client.change(args.name, body)


def _body(args: argparse.Namespace) -> dict[str, Any]:
    """The request's JSON body from the options given.

    Raises:
        ConfigError: a spec with no name, an alert setting with no alert, nothing to change.
    """
    from streamer.analysis.labels import load_labels
    from streamer.errors import ConfigError
    from streamer.sources import split_stream_name

    body: dict[str, Any] = {}
    if args.action == "add":
        name, spec = split_stream_name(args.spec)
        if name is None:
            raise ConfigError(f"{args.spec!r}: give the stream a name, NAME=URL "
                              "(e.g. door=rtsp://cam/1)")  # fmt: skip
        body.update(name=name, input=spec)
    if args.rate is not None:
        body["analyze-fps"] = args.rate
    if args.labels is not None:  # a file is read here, as `streamer run --labels` reads it
        items = args.labels if isinstance(args.labels, list) else [args.labels]
        body["labels"] = [label for item in items for label in load_labels(item)]
    settings = {key: getattr(args, _dest_of(key)) for key in _ALERT_KEYS
                if hasattr(args, _dest_of(key))}  # fmt: skip
    if args.alerts is not None:
        body["alerts"] = [{"query": query, **settings} for query in args.alerts]
    elif settings:
        flag = "--alert" if args.action == "add" else "--alerts"
        raise ConfigError(f"--{next(iter(settings))} sets the alerts given with {flag}; "
                          f"give {flag} QUERY too")  # fmt: skip
    if args.captions is not None:
        body["captions"] = args.captions
    if args.action == "set" and not body:
        raise ConfigError("nothing to change: give --rate, --labels, --alerts or --captions")
    return body


def _dest_of(key: str) -> str:
    """The attribute of a parse that holds `streamer run`'s option `key`."""
    return dest(next(row for row in TABLE if row.option.key == key))


class StreamsClient:
    """The stream API of a running run, over one aiohttp session.

    Args:
        session: the session requests go through (its owner closes it).
        server: the viewer's URL (`http://127.0.0.1:8080`).
        token: its `--serve-token`; None sends none (reads work on a viewer without one).
    """

    def __init__(self, session: Any, server: str, token: str | None) -> None:
        self._session = session
        self.server = server.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def list(self) -> list[dict[str, Any]]:
        """Every stream with its settings, and its frame rates from `/api/status`."""
        streams = (await self._call("GET", "/api/streams"))["streams"]
        status = await self._call("GET", "/api/status")
        rates = {s["name"]: s.get("fps", {}) for s in status.get("streams", [])}
        return [{**stream, "fps": rates.get(stream["name"], {})} for stream in streams]

    async def add(self, body: dict[str, Any]) -> dict[str, Any]:
        """Add a stream (`POST /api/streams`); answers it as the server describes it."""
        return await self._call("POST", "/api/streams", body)

    async def settled(self, added: dict[str, Any], wait: float = ADD_WAIT_S) -> dict[str, Any]:
        """`added` once its first connection is over (online, offline or failed, with the
        status's `last_error`), or as it is after `wait` seconds."""
        deadline = asyncio.get_running_loop().time() + wait
        stream = added
        while stream.get("state") == "connecting" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.25)
            status = await self._call("GET", "/api/status")
            found = [s for s in status.get("streams", []) if s.get("name") == added["name"]]
            if not found:
                break
            stream = {**added, "state": found[0].get("state"),
                      "last_error": found[0].get("last_error")}  # fmt: skip
        return stream

    async def remove(self, name: str) -> dict[str, Any]:
        """Remove a stream; answers its summary."""
        return await self._call("DELETE", f"/api/streams/{_quoted(name)}")

    async def change(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change a running stream (`PATCH`); answers it as the server describes it now."""
        return await self._call("PATCH", f"/api/streams/{_quoted(name)}", body)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; its JSON answer.

        Raises:
            ApiRefusedError: a 4xx answer (the server's message).
            ApiUnavailableError: no answer, a 5xx, or an answer that is not the API's.
        """
        import aiohttp

        from streamer.errors import ApiRefusedError, ApiUnavailableError

        url = self.server + path
        extra = {"json": body} if body is not None else {}
        try:
            async with self._session.request(method, url, headers=self._headers, **extra) as r:
                text = await r.text()
                status = r.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = getattr(getattr(exc, "os_error", None), "strerror", None) or str(exc)
            raise ApiUnavailableError(
                f"cannot reach {self.server} ({reason or type(exc).__name__}): "
                f"is a `streamer run ... --serve ADDR --serve-token T` running there? Give "
                f"its address with --server URL (or {SERVER_ENV})"
            ) from None
        answer = _json(text)
        message = answer.get("error") if isinstance(answer, dict) else None
        message = " ".join(str(message or text or f"HTTP {status}").split())
        message = message.removeprefix(f"{status}: ")  # said once, below
        if status in (401, 403) and "token" in message:
            message += f" (give --token T, or set {TOKEN_ENV})"
        if 400 <= status < 500:
            raise ApiRefusedError(f"{method} {path}: {status}: {message}", status)
        if status >= 300 or answer is None:
            raise ApiUnavailableError(f"{url}: {status}: {message[:200]}; is it a streamer "
                                      "run's viewer (--serve)?")  # fmt: skip
        return answer


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _table(streams: list[dict[str, Any]]) -> str:
    """The streams as a table with a header row; sources shown without credentials."""
    from streamer.sources import redact

    if not streams:
        return "no streams (add one: streamer streams add NAME=URL)"
    rows = [_COLUMNS]
    for s in streams:
        fps = s.get("fps", {}).get("out")
        rows.append((
            s["name"], redact(str(s.get("input") or "")), "yes" if s.get("live") else "no",
            f"{fps:.1f}" if isinstance(fps, int | float) else "-",
            str(s.get("frames", {}).get("analysed", "-")), str(s.get("analyze_fps")),
            str(s.get("state")),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)  # fmt: skip


def _settings_line(stream: dict[str, Any], done: str) -> str:
    alerts = ", ".join(a["query"] for a in stream.get("alerts", [])) or "none"
    labels = ", ".join(stream.get("labels") or []) or "the run's"
    rate, captions, state = stream.get("analyze_fps"), stream.get("captions"), stream.get("state")
    why = f" ({stream['last_error']}; it keeps retrying)" if state == "offline" else ""
    return (f"{done} {stream['name']}: rate {rate}, labels {labels}, alerts {alerts}, "
            f"captions {captions}, state {state}{why}")  # fmt: skip
