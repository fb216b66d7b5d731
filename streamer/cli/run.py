"""`streamer run`: flags (and a `--config` file) → RunConfig → the pipeline → summary and exit
code. The flags come from the option table (`streamer.cli.options`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from collections.abc import Callable

from streamer.cli.build import Settings, configure, settings
from streamer.cli.exits import EXIT_ERROR, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, report
from streamer.cli.flags import add_options
from streamer.config import RunConfig
from streamer.core import startup
from streamer.core.signal_stack import ensure_signal_stack
from streamer.pipeline import run_pipeline
from streamer.reload import Reading, Reloader
from streamer.report import RunSummary

log = logging.getLogger("streamer")


def add_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="annotate video files, cameras and streams",
        description="Annotate video files, cameras and streams: zero-shot tags, scene changes, "
        "alerts and captions drawn on every frame, written as video, subtitles and JSON Lines, "
        "shown in a window or served to a browser.",
    )
    add_options(run)
    run.set_defaults(handler=run_command)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run configuration of a parse of `streamer run` and the `--config` file it names.

    Each value was checked when it was parsed (the command line's by its argparse `type`, the
    file's by the same check); what is left are the checks between options, named as the user
    gave them: the flag, and the file's key where a file set it.

    Raises:
        ConfigError: naming the option (and the file's key) and what is allowed.
    """
    return configure(settings(args))


def run_command(args: argparse.Namespace) -> int:
    startup.mark("imports", since=0.0)  # the interpreter's start and the imports before this
    try:
        with startup.phase("config"):
            given = settings(args)
            config = configure(given)
    except Exception as exc:
        return report(exc)
    if given.get("profile-startup"):
        startup.enable()
    progress = not given.get("no-progress")
    signals: list[int] = []
    reloader = reloader_for(args, given, config)
    # With --config a SIGHUP re-reads it; without one it stops the run like SIGTERM (a closed
    # terminal ends the run with its outputs finished).
    hangup = reloader.request if reloader is not None else None
    if hangup is None and given.file is not None:
        hangup = _no_reload(config)

    def run(stop: asyncio.Event):
        if config.cluster is not None:  # the same run, spread over a Ray cluster
            from streamer.cluster import run_cluster  # Ray loads only for a cluster run

            return run_cluster(config, stop=stop, progress=progress)
        return run_pipeline(config, stop=stop, progress=progress, reloader=reloader)

    try:
        summary = run_with_signals(run, signals, hangup)
    except Exception as exc:  # the tree states each error's exit code; a bug is re-raised
        return report(exc)
    except asyncio.CancelledError:
        print("streamer: aborted; outputs closed with what was written", file=sys.stderr)
        return _interrupted(signals)
    _print_summary(summary, config)
    if summary.interrupted:
        return _interrupted(signals)
    if any(s.state == "failed" for s in summary.streams):
        return EXIT_ERROR
    return EXIT_INCOMPLETE if summary.incomplete else EXIT_OK


def reloader_for(args: argparse.Namespace, given: Settings, config: RunConfig) -> Reloader | None:
    """What re-reads the `--config` file of a one-process run (None: no file, a cluster)."""
    if given.file is None or config.cluster is not None:
        return None

    def read() -> Reading:  # the file and the same command line, as at the start
        again = settings(args)
        return Reading(configure(again), again.values)

    return Reloader(read, given.file.path, Reading(config, given.values))


def _no_reload(config: RunConfig) -> Callable[[], None]:
    """What a SIGHUP does in a run with --config that cannot reload it (a cluster run): say
    why, and go on."""
    why = "a --cluster run cannot re-read its --config while it runs (yet)"
    return lambda: log.warning("SIGHUP: %s; the run goes on", why)


def _interrupted(signals: list[int]) -> int:
    """130 for Ctrl-C (or a stop from inside, e.g. the window's quit key), 128 + N for signal N
    (143 for SIGTERM), as shells report a process a signal ended."""
    return 128 + signals[0] if signals else EXIT_INTERRUPTED


def _print_summary(summary: RunSummary, config: RunConfig) -> None:
    state = "stopped early" if summary.interrupted else "done"
    print(
        f"streamer: {state}: {summary.frames} frames, {summary.analysed} analysed, "
        f"{summary.captions} captions in {summary.wall_s:.1f} s ({summary.fps:.1f} fps)",
        file=sys.stderr,
    )
    if len(summary.streams) > 1 or any(
        s.reconnects or s.dropped or s.damaged for s in summary.streams
    ):
        for s in summary.streams:
            latency = "/".join("-" if math.isnan(ms) else f"{ms:.0f}" for ms in s.latency_ms)
            print(
                f"streamer:   {s.name}: {s.frames} frames, {s.analysed} analysed, {s.dropped} "
                f"dropped, {s.reconnects} reconnects, {s.damaged} damaged, latency p50/p95/p99 "
                f"{latency} ms, {s.state}",
                file=sys.stderr,
            )
    for s in summary.streams:
        if s.damaged_packets:
            print(f"streamer: note: {s.name}: skipped {s.damaged_packets} damaged packet(s) "
                  "that did not decode; the frames around them were annotated",
                  file=sys.stderr)  # fmt: skip
        elif s.damaged:  # a live stream: lost packets on the way from the camera
            print(f"streamer: note: {s.name}: {s.damaged} damaged (packets that did not decode "
                  "or pictures decoded with errors): usually packets lost on the way from the "
                  "camera (RTSP over UDP); --rtsp-transport tcp, the default, loses none",
                  file=sys.stderr)  # fmt: skip
    if summary.random_weights:
        print("streamer: note: the encoder used RANDOM weights; tags are meaningless",
              file=sys.stderr)  # fmt: skip
    if summary.incomplete:
        print(f"streamer: input incomplete: {summary.incomplete}", file=sys.stderr)


def run_with_signals(
    coro_factory, received: list[int] | None = None, hangup: Callable[[], None] | None = None
) -> object:
    """Run a coroutine under `asyncio.run` with graceful Ctrl-C / SIGTERM.

    The first SIGINT or SIGTERM sets the stop event the coroutine was given (sources stop,
    the pipeline drains, outputs are finalised); a second one cancels the run outright, which
    still closes every file.

    Args:
        coro_factory: called with the stop event, returns the coroutine to run.
        received: the signals that arrived are appended to it (for the exit code).
        hangup: called in the loop on each SIGHUP (a reload), which then never ends the run;
            None: a SIGHUP stops the run as SIGTERM does. Windows has no SIGHUP: there a
            reload is `POST /api/reload` only.
    """

    async def runner():
        ensure_signal_stack()  # a library may have left this thread's one freed (signal_stack)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()

        def on_signal(signum: int) -> None:
            if received is not None:
                received.append(signum)
            if not stop.is_set():
                print(
                    f"\nstreamer: {signal.Signals(signum).name}: stopping, finishing outputs "
                    "(again to abort)",
                    file=sys.stderr,
                )
                stop.set()
            else:
                task.cancel()

        hup = getattr(signal, "SIGHUP", None)  # none on Windows
        stops = [signal.SIGINT, signal.SIGTERM] + ([hup] if hangup is None and hup else [])
        for sig in stops:
            loop.add_signal_handler(sig, on_signal, sig)
        if hangup is not None and hup is not None:
            loop.add_signal_handler(hup, hangup)
        try:
            return await coro_factory(stop)
        finally:
            for sig in stops:
                loop.remove_signal_handler(sig)
            if hangup is not None and hup is not None:
                loop.remove_signal_handler(hup)

    return asyncio.run(runner())
