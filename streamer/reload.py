"""Re-reading a running run's `--config` file: `SIGHUP` and `POST /api/reload`.

A run's configuration is its file and its command line, read as at the start
(`streamer.cli.build`: the CLI hands a `Reloader` the function that reads them). A reload reads
them again, compares the streams with the last reading and applies the difference through the
run's control (`streamer.control.RunControl`); the streams it does not name run on untouched:

- a stream only the new reading has: added; one only the last reading had: removed (its
  outputs finished);
- a stream whose input changed: removed and added again under its name, writing the same
  outputs (what it wrote before is kept beside them as `NAME.keep-N.EXT`);
- `analyze-fps` changed: each of the configuration's running streams takes the new rate from
  its next frame;
- a `[[sources]]` entry's own settings changed (`analyze-fps`, `labels`, `alerts`,
  `captions`: `RunConfig.stream_settings`): that stream alone changes them, live, as
  `PATCH /api/streams/NAME` does; a setting no longer given goes back to the run's;
- any other option changed (encoder, device, `--serve`, archive, outputs, alerts...): reported,
  one line each, and otherwise ignored; it takes effect at the next start.

The command line's inputs are in every reading, so only the file's streams can differ; streams
added or removed through the stream API are not the configuration's, and a reload leaves them
alone unless the file's own entry of that name changes. A file that does not read (TOML syntax,
an unknown key, a bad value) changes nothing: `ConfigError` with the start-up reader's words.

One reload runs at a time: a `SIGHUP` that comes while one runs is kept and served after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamer.config import RunConfig
from streamer.control import ALERTS, CAPTIONS, LABELS, RATE, RunControl
from streamer.errors import ConfigError, SourceError, StreamerError
from streamer.outputs.keep import keep_outputs
from streamer.sources import stream_names
from streamer.sources.status import DELIVERING_STATES
from streamer.watch.web.stream_body import StreamRequest

__all__ = ["Changes", "Outcome", "Reading", "Reloader", "compare"]

log = logging.getLogger("streamer")

#: Options a reload applies itself (the streams, their rate), or that name the file.
LIVE_KEYS = frozenset({"inputs", "sources", "analyze-fps", "config"})
_SAME = object()  # the analysis rate did not change


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading of a run's configuration.

    Attributes:
        config: the run's configuration, as the run is built from it.
        options: option key → value as the file and the command line gave them (what an
            ignored change is named by: `encoder`, `serve`).
    """

    config: RunConfig
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Changes:
    """What a new reading changes, against the streams and rate the run has from the last.

    Attributes:
        added: name → input spec of the streams to add.
        removed: names of the streams to remove.
        replaced: name → new input spec of the streams whose input changed.
        kept: names of the streams left as they run.
        rate: the new analysis rate (None: every frame), or `_SAME`.
        ignored: the keys of the options that changed but cannot change while the run runs.
        own: name → the new `stream_settings` of each stream whose own settings changed
            (its input kept).
    """

    added: dict[str, str]
    removed: list[str]
    replaced: dict[str, str]
    kept: list[str]
    rate: Any
    ignored: list[str]
    own: dict[str, dict[str, Any]] = field(default_factory=dict)


def compare(
    streams: Mapping[str, str], rate: float | None, options: Mapping[str, Any], new: Reading,
    own: Mapping[str, dict[str, Any]] | None = None,
) -> Changes:  # fmt: skip
    """The changes of `new` against the last applied streams, rate and streams' own settings
    (`own`), and the options the run started with (a change not applied is reported at every
    reload until a restart).

    Example:
        >>> from streamer.outputs.options import OutputConfig
        >>> out = OutputConfig(jsonl="{stream}.jsonl")
        >>> old = RunConfig(input=("a=x.mp4", "b=y.mp4"), outputs=out)
        >>> new = RunConfig(input=("b=z.mp4", "c=w.mp4"), outputs=out)
        >>> c = compare(dict(stream_names(old.inputs)), None, {"encoder": "clip"},
        ...             Reading(new, {"encoder": "siglip"}))
        >>> c.added, c.removed, c.replaced, c.kept, c.ignored
        ({'c': 'w.mp4'}, ['a'], {'b': 'z.mp4'}, [], ['encoder'])
    """
    wanted = dict(stream_names(new.config.inputs))
    new_rate = new.config.analysis.analyze_fps
    keys = dict.fromkeys([*options, *new.options])  # in order, once
    own, settings = own or {}, new.config.stream_settings
    kept = [n for n, s in wanted.items() if streams.get(n) == s]
    return Changes(
        own={n: settings.get(n, {}) for n in kept if settings.get(n, {}) != own.get(n, {})},
        added={n: s for n, s in wanted.items() if n not in streams},
        removed=[n for n in streams if n not in wanted],
        replaced={n: s for n, s in wanted.items() if n in streams and streams[n] != s},
        kept=[n for n, s in wanted.items() if streams.get(n) == s],
        rate=_SAME if new_rate == rate else new_rate,
        ignored=[k for k in keys if k not in LIVE_KEYS and options.get(k) != new.options.get(k)],
    )


@dataclass
class Outcome:
    """What a reload did: the answer of `POST /api/reload` (`as_dict`) and the log line."""

    path: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)  # (name, what changed)
    kept: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # one line per option
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    def line(self) -> str:
        """`reload: +gate, -yard, ~door (input)`: what changed, for the log and the table."""
        parts = [f"+{n}" for n in self.added] + [f"-{n}" for n in self.removed]
        parts += [f"~{n} ({what})" for n, what in self.changed]
        parts += [f"!{n} (failed)" for n, _ in self.failed]
        if not parts and not self.ignored:
            return f"reload: no change in {self.path}"
        text = ", ".join(parts) if parts else "no stream changed"
        if self.ignored:
            text += f"; {len(self.ignored)} option(s) changed for the next start"
        return f"reload: {text}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": [{"name": n, "what": what} for n, what in self.changed],
            "kept": self.kept,
            "ignored": self.ignored,
            "failed": [{"name": n, "error": why} for n, why in self.failed],
            "summary": self.line(),
        }


class Reloader:
    """Re-reads a run's configuration and changes its streams to match.

    Args:
        read: reads the configuration again (the file and the command line, as at the start);
            raises ConfigError naming the problem. It runs in a thread.
        path: the file, for messages.
        first: the reading the run started with.
    """

    def __init__(self, read: Callable[[], Reading], path: str, first: Reading) -> None:
        self.path = path
        self._read = read
        self._options = dict(first.options)  # what the run started with: never changes live
        self._streams = dict(stream_names(first.config.inputs))  # as applied: name → spec
        self._rate = first.config.analysis.analyze_fps
        self._started_rate = self._rate  # the sampler's own rate, for the streams without one
        self._open_timeout = first.config.sources.open_timeout
        self._own = dict(first.config.stream_settings)  # as applied: name → its own settings
        self._next_own: Mapping[str, dict[str, Any]] = self._own  # the reading being applied
        self._control: RunControl | None = None
        self._notes: dict[str, str] | None = None
        self._lock = asyncio.Lock()
        self._wanted = False  # a SIGHUP came that no reload has served yet
        self._ended = False
        self._serving: asyncio.Task | None = None

    def attach(self, control: RunControl, notes: dict[str, str] | None = None) -> None:
        """The run runs: reloads change its streams through `control`; the last reload's line
        goes in `notes` (shown under the status table). A SIGHUP that came before is served."""
        self._control, self._notes = control, notes
        if self._wanted:
            self.request()

    def detach(self) -> None:
        """The run ends: no reload from now on (a SIGHUP still being served is cancelled)."""
        self._control, self._ended = None, True
        if self._serving is not None:
            self._serving.cancel()

    def request(self) -> None:
        """Reload soon, from the event loop (the SIGHUP handler): after the reload that runs,
        if one does; SIGHUPs that come meanwhile make one reload together."""
        if self._ended:
            log.info("SIGHUP: the run is ending; %s is not re-read", self.path)
            return
        self._wanted = True
        if self._control is None:
            log.info("SIGHUP: the run is not running yet; %s is re-read once it is", self.path)
            return
        if self._serving is None or self._serving.done():
            self._serving = asyncio.get_running_loop().create_task(self._serve(), name="reload")

    async def _serve(self) -> None:
        while self._wanted and self._control is not None:
            self._wanted = False
            with contextlib.suppress(ConfigError):  # logged; the running configuration is kept
                await self.reload()

    async def reload(self) -> dict[str, Any]:
        """Read the configuration again and apply the difference; the answer of
        `POST /api/reload`.

        Raises:
            ConfigError: the file does not read (the running configuration is kept), or the
                run is not running.
        """
        async with self._lock:
            control = self._control
            if control is None:
                raise ConfigError("the run is not running: nothing to reload")
            try:
                reading = await asyncio.to_thread(self._read)
            except ConfigError as exc:
                log.warning("reload: the running configuration is kept: %s", exc)
                self._note(f"the running configuration is kept: {str(exc).splitlines()[0]}")
                raise
            changes = compare(self._streams, self._rate, self._options, reading, self._own)
            self._next_own = reading.config.stream_settings
            with control.held():
                outcome = await self._apply(control, changes)
            self._own = {n: s for n, s in self._next_own.items() if n in self._streams}
            self._report(outcome)
            return outcome.as_dict()

    async def _apply(self, control: RunControl, changes: Changes) -> Outcome:
        outcome = Outcome(self.path, kept=list(changes.kept))
        outcome.ignored = [f"{key}: changed in the file; takes effect at the next start"
                           for key in changes.ignored]  # fmt: skip
        if changes.rate is not _SAME:
            self._rate = changes.rate
        running = {stream["name"] for stream in control.streams()}
        for name in changes.removed:
            if name in running:
                await control.remove(name)
                outcome.removed.append(name)
            del self._streams[name]
        for name, spec in changes.replaced.items():
            await self._replace(control, name, spec, name in running, outcome)
        for name, spec in changes.added.items():
            try:
                await control.add(self._request(name, spec))
            except StreamerError as exc:
                outcome.failed.append((name, str(exc)))
                continue
            self._streams[name] = spec
            outcome.added.append(name)
        for name, own in changes.own.items():
            if name in running:
                await self._change_own(control, name, own, outcome)
        if changes.rate is not _SAME:
            for name in [n for n in changes.kept if n in running]:
                if RATE in self._next_own.get(name, {}):
                    continue  # a rate of its own
                await control.change(name, StreamRequest(settings={RATE: changes.rate}))
                if name in outcome.kept:
                    outcome.kept.remove(name)
                outcome.changed.append((name, "rate"))
        return outcome

    async def _change_own(
        self, control: RunControl, name: str, own: dict[str, Any], outcome: Outcome
    ) -> None:
        """A kept stream's own settings as the file now gives them; one it no longer gives
        goes back to the run's."""
        old = self._own.get(name, {})
        settings = {key: value for key, value in own.items() if old.get(key) != value}
        back = {RATE: self._rate, LABELS: None, ALERTS: None, CAPTIONS: True}
        settings.update({key: back[key] for key in old if key not in own})
        try:
            await control.change(name, StreamRequest(settings=settings))
        except StreamerError as exc:
            outcome.failed.append((name, f"its own settings: {exc}"))
            return
        outcome.kept.remove(name)
        what = ", ".join(sorted(key.rsplit(".", 1)[-1].replace("_", "-") for key in settings))
        outcome.changed.append((name, what))

    async def _replace(
        self, control: RunControl, name: str, spec: str, running: bool, outcome: Outcome
    ) -> None:
        """The stream `name` on its new input, writing the same outputs (what it wrote before
        is kept beside them); back on its old input if the new one cannot open."""
        old, outputs = self._streams[name], {}
        if running:
            described = next(s for s in control.streams() if s["name"] == name)
            outputs = {f"outputs.{k}": v for k, v in described["outputs"].items() if v}
            await control.remove(name)
            keep_outputs(name, list(outputs.values()))
        try:
            await control.add(self._request(name, spec, outputs))
            # `add` opens a camera's stream in the background: wait to see it come up.
            why = await self._came_up(control, name)
            if why is not None:
                await control.remove(name)
                raise SourceError(why)
        except StreamerError as exc:
            outcome.failed.append((name, f"its new input cannot run: {exc}"))
            if running:
                try:
                    await control.add(self._request(name, old, outputs))
                except StreamerError as again:
                    outcome.failed.append((name, f"nor its old one: {again}"))
                    del self._streams[name]
            return
        self._streams[name] = spec
        outcome.changed.append((name, "input"))

    async def _came_up(self, control: RunControl, name: str) -> str | None:
        """None once the stream `name` delivers a frame or plays; else why not, once it has
        failed, or has not connected within the sources' open timeout (and a margin)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._open_timeout + 2.0
        while True:
            described = next((s for s in control.streams() if s["name"] == name), None)
            if described is None:
                return "it was removed meanwhile"
            state, error = described["state"], described.get("error")
            if described["frames"]["decoded"] > 0 or state in DELIVERING_STATES:
                return None
            if state in ("failed", "ended"):
                return f"it {state}: {error}" if error else f"it {state} before its first frame"
            if loop.time() > deadline:
                since = f" ({error})" if error else ""
                return f"it did not connect within {self._open_timeout:g} s{since}"
            await asyncio.sleep(0.2)

    def _request(
        self, name: str, spec: str, outputs: dict[str, str] | None = None
    ) -> StreamRequest:
        """What adds a stream of the configuration: its name and input, its outputs when it
        had its own, and the rate when a reload changed the run's (the sampler keeps the one
        the run started with)."""
        settings: dict[str, Any] = dict(outputs or {})
        if self._rate != self._started_rate:
            settings[RATE] = self._rate
        settings.update(self._next_own.get(name, {}))  # its own settings in the file
        return StreamRequest(name=name, input=spec, settings=settings)

    def _report(self, outcome: Outcome) -> None:
        line = outcome.line()
        log.info("%s", line)
        for ignored in outcome.ignored:
            log.warning("reload: %s", ignored)
        for name, why in outcome.failed:
            log.warning("reload: %s: %s", name, why)
        self._note(line.removeprefix("reload: "))

    def _note(self, text: str) -> None:
        """The line under the status table: when the last reload was, and what it did."""
        if self._notes is not None:
            self._notes["reload"] = f"{time.strftime('%H:%M:%S')} reload: {text}"
