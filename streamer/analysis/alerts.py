"""Text-query alerts: "a person at the door" fires when analysed frames look like the text.

CLIP puts images and text in one embedding space, so the cosine similarity between a frame's
embedding and a query's text embedding says how well the query describes the frame. One
similar frame is not enough (a single analysed frame is noisy), so a rule fires only after
`frames` consecutive analysed frames score at least `threshold`, and then stays quiet for
`cooldown_s` seconds of the stream's own time (media time for files, so a file's alerts are
the same every run; the run's timeline for live streams). A condition that holds on through
the cooldown fires again once it ends: a person standing at the door for five minutes is
reported every `cooldown_s`, not once.

A rule that fired is *on* until its condition has stopped holding, by the same two settings
mirrored: once `frames` consecutive analysed frames no longer match and its cooldown since it
last fired is over, it clears (`AlertCleared`: an MQTT binary sensor goes off). So "on" spans
the cooldown, and a condition back after the rule cleared fires at once (its cooldown is over).
A rule still on when its stream stops delivering frames clears then (`AlertDetector.clear`):
the stream offline, its input ended, the run stopped or the stream removed, each its `reason`.

::

    analysed frame ─► AlertDetector.scan(stream, …) ─► AlertTracker per (stream, rule)
                                                          ├─► Alert ─► JSONL, overlay, observers
                                                          └─► AlertCleared ─► JSONL, observers
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from encoders import list_encoders
from streamer.core.checks import float_at_least, float_in, int_at_least
from streamer.core.options import Option, option, validate
from streamer.errors import ConfigError

__all__ = [
    "DEFAULT_ALERT_THRESHOLD",
    "Alert",
    "AlertCleared",
    "AlertDetector",
    "AlertRule",
    "AlertTracker",
    "check_alert_encoder",
    "check_rule_streams",
]

#: Cosine similarity of a frame to a query that counts as a match, for CLIP ViT-B/32. With
#: OpenAI's weights a short query that describes a frame scores about 0.27-0.33 and an
#: unrelated one about 0.12-0.22, so 0.27 sits just above the unrelated range.
DEFAULT_ALERT_THRESHOLD = 0.27


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One text query to watch for.

    Attributes:
        query: what to look for, in words ("a person at the door"); embedded as written.
        streams: the streams it watches; empty watches every stream of the run.
        threshold: cosine similarity (-1..1) at or above which an analysed frame matches.
        frames: consecutive matching analysed frames that fire the alert (≥ 1).
        cooldown_s: seconds of stream time after an alert during which the rule stays quiet.
    """

    query: str
    streams: tuple[str, ...] = ()
    threshold: float = option(
        DEFAULT_ALERT_THRESHOLD,
        Option("--alert-threshold", "cosine similarity of frame and query, -1..1, that counts "
               "as a match (with CLIP ViT-B/32 a query that describes the frame scores about "
               "0.27-0.33, an unrelated one 0.12-0.22; other models need their own value)",
               float_in(-1, 1, "a cosine similarity"), metavar="COSINE"),
    )  # fmt: skip
    frames: int = option(
        2,
        Option("--alert-frames", "consecutive matching analysed frames that fire an alert",
               int_at_least(1), metavar="N"),
    )  # fmt: skip
    cooldown_s: float = option(
        30.0,
        Option("--alert-cooldown", "seconds of stream time a query stays quiet after it fired",
               float_at_least(0, "seconds"), metavar="SECONDS"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise ConfigError(f"alert query must be some text, got {self.query!r}")
        if isinstance(self.streams, str):
            raise ConfigError(
                f"alert streams must be a tuple of stream names, got the string {self.streams!r}"
            )
        validate(self)

    def watches(self, stream: str) -> bool:
        """Whether this rule applies to `stream`."""
        return not self.streams or stream in self.streams


def check_rule_streams(rules: tuple[AlertRule, ...], streams: list[str]) -> None:
    """Fail before any work when a rule names a stream the run does not have."""
    for rule in rules:
        unknown = [name for name in rule.streams if name not in streams]
        if unknown:
            raise ConfigError(
                f"alert {rule.query!r} watches stream {unknown[0]!r}, which this run does not "
                f"have; its streams are {', '.join(streams)}"
            )


def check_alert_encoder(rules: tuple[AlertRule, ...], kind: str, has_text: bool | None) -> None:
    """Alerts compare frames with the text of their queries: fail before any work when the
    encoder has no text tower (`has_text` None: judged by its `kind`, before it is loaded)."""
    if not rules:
        return
    if has_text is None:
        kind = kind.strip().lower()
        has_text = kind not in {spec.kind for spec in list_encoders() if not spec.has_text}
    if not has_text:
        raise ConfigError(
            f"--alert needs an encoder with a text tower to embed its query, and the {kind} "
            "encoder has none. Fix: --encoder clip (or leave out --alert)"
        )


@dataclass(frozen=True, slots=True, eq=False)
class Alert:
    """A rule that fired.

    Attributes:
        stream: the stream it fired on.
        time: when, on the stream's timeline: media time for files, seconds since the run
            started for live streams.
        wall: `time.time()` when it was detected.
        query: the rule's query.
        score: the cosine similarity of the frame that fired it.
        threshold: the rule's threshold.
        frame_index: the analysed frame that fired it.
        caption: the caption in force on the stream when the alert was emitted (None before
            the first caption).
        image: the analysed frame, H×W×3 uint8 RGB, without overlay (for snapshots). Not
            copied: analysed frames are never drawn on.
        clip: where the alert's clip will be, relative to the archive directory
            (`clips/<stream>/<time>-<query>.mp4`), with `--archive`; None without. Decided when
            the alert fires; the file appears once its span is recorded and cut.
    """

    stream: str
    time: float
    wall: float
    query: str
    score: float
    threshold: float
    frame_index: int
    caption: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    clip: str | None = None

    @property
    def banner(self) -> str:
        """How the overlay shows it."""
        return f"ALERT {self.query} {self.score:.2f}"


@dataclass(frozen=True, slots=True)
class AlertCleared:
    """A rule that fired has stopped holding: `frames` analysed frames in a row no longer
    match it and its cooldown is over.

    Attributes:
        stream: the stream it cleared on.
        time: when, on the stream's timeline (as `Alert.time`).
        wall: `time.time()` when it was noticed.
        query: the rule's query.
        score: the cosine similarity of the frame that cleared it.
        threshold: the rule's threshold.
        frame_index: the analysed frame that cleared it (the stream's last analysed frame
            when it cleared because the stream stopped delivering frames).
        fired: when it last fired, on the stream's timeline.
        reason: why: "no match" (its frames stopped matching), "offline" (its stream stopped
            delivering frames: a camera offline and reconnecting, a source that failed),
            "ended" (its stream's input ended: a file's end, a live stream that ended),
            "stopped" (the run was stopped) or "removed" (its stream left the running run).
    """

    stream: str
    time: float
    wall: float
    query: str
    score: float
    threshold: float
    frame_index: int
    fired: float
    reason: str = "no match"


FIRED, CLEARED = "fired", "cleared"


class AlertTracker:
    """The state of one rule on one stream: the runs of matching and of non-matching frames,
    the cooldown, and whether it is on (fired and not cleared since).

    Pure logic over (score, time) pairs: it never reads a clock, so tests step time.

    Args:
        rule: the rule it tracks.
    """

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self.run = 0  # consecutive analysed frames at or above the threshold
        self.misses = 0  # consecutive analysed frames below it
        self.last_fired: float | None = None
        self.on = False

    def update(self, score: float, time: float) -> bool:
        """Count one analysed frame's `score` at stream time `time`; True when it fires."""
        return self.step(score, time) == FIRED

    def step(self, score: float, time: float) -> str | None:
        """Count one analysed frame; `FIRED` when the rule fires on it, `CLEARED` when the
        rule was on and has stopped holding, else None."""
        rule = self.rule
        match = score >= rule.threshold
        self.run, self.misses = (self.run + 1, 0) if match else (0, self.misses + 1)
        quiet = self.last_fired is not None and time - self.last_fired < rule.cooldown_s
        if self.run >= rule.frames and not quiet:
            self.last_fired, self.on = time, True
            return FIRED
        if self.on and self.misses >= rule.frames and not quiet:
            self.on = False
            return CLEARED
        return None


class AlertDetector:
    """Every rule of a run with its query embedding, and a tracker per stream and rule.

    Args:
        rules: the rules.
        embeddings: [len(rules), dim] text embeddings of the queries, rows L2-normalised.
        clock: wall clock for `Alert.wall` (injectable for tests).

    A stream may have its own set of rules instead (`set_rules`, from the stream API): it is
    checked against them from its next analysed frame on, the others against theirs.
    """

    def __init__(
        self,
        rules: tuple[AlertRule, ...],
        embeddings: np.ndarray,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        embeddings = _rows(rules, embeddings)
        self.rules = tuple(rules)
        self.embeddings = embeddings
        self.clock = clock
        self._watches: dict[str, _Watch] = {}

    def rules_for(self, stream: str) -> tuple[AlertRule, ...]:
        """The rules `stream` is checked against."""
        return tuple(tracker.rule for tracker in self._watch(stream).trackers)

    def set_rules(self, stream: str, rules: tuple[AlertRule, ...], embeddings: np.ndarray) -> None:
        """Check `stream` against `rules` (with their query embeddings) from now on, instead
        of the rules it had. A rule it keeps keeps its state (its run of matching frames,
        its cooldown), so replacing the set does not fire a kept rule again at once.

        Raises:
            ValueError: `embeddings` has not one row per rule.
        """
        embeddings = _rows(rules, embeddings)
        kept = {_same(t.rule): t for t in self._watch(stream).trackers}
        trackers = [kept.get(_same(rule)) or AlertTracker(rule) for rule in rules]
        self._watches[stream] = _Watch(embeddings, trackers)

    def clear(
        self, stream: str, time: float, frame_index: int, reason: str = "offline",
        keep: tuple[AlertRule, ...] = (),
    ) -> list[AlertCleared]:  # fmt: skip
        """Turn off every rule that is on for `stream`, which has stopped delivering frames
        (a camera offline, its end, the run's stop): nothing watches them now, so they clear
        at once (with `reason`, no score) and start again from no frames seen. Its cooldown
        is kept. A rule that is off gives nothing: a second call clears nothing again. The
        rules in `keep` are left as they are (the ones a change of the stream's set keeps)."""
        watch = self._watches.get(stream)
        cleared = []
        kept = {_same(rule) for rule in keep}
        for tracker in watch.trackers if watch is not None else ():
            if _same(tracker.rule) in kept:
                continue
            if tracker.on:
                rule = tracker.rule
                cleared.append(
                    AlertCleared(stream, time, self.clock(), rule.query, float("nan"),
                                 rule.threshold, frame_index, tracker.last_fired, reason)
                )  # fmt: skip
            tracker.run = tracker.misses = 0
            tracker.on = False
        return cleared

    def rules_of(self, stream: str) -> tuple[AlertRule, ...]:
        """The run's rules that watch `stream` (those it has without a set of its own)."""
        return tuple(rule for rule in self.rules if rule.watches(stream))

    def forget(self, stream: str) -> None:
        """Drop the state of a stream that left the run."""
        self._watches.pop(stream, None)

    def _watch(self, stream: str) -> _Watch:
        watch = self._watches.get(stream)
        if watch is None:
            mine = [i for i, rule in enumerate(self.rules) if rule.watches(stream)]
            trackers = [AlertTracker(self.rules[i]) for i in mine]
            watch = self._watches[stream] = _Watch(self.embeddings[mine], trackers)
        return watch

    def check(
        self,
        stream: str,
        frame_index: int,
        time: float,
        embedding: np.ndarray,
        image: np.ndarray | None = None,
    ) -> list[Alert]:
        """The alerts that fire on one analysed frame (`scan` without the cleared ones)."""
        return self.scan(stream, frame_index, time, embedding, image)[0]

    def scan(
        self,
        stream: str,
        frame_index: int,
        time: float,
        embedding: np.ndarray,
        image: np.ndarray | None = None,
    ) -> tuple[list[Alert], list[AlertCleared]]:
        """Score one analysed frame against every rule watching `stream`.

        Args:
            stream: the stream's name.
            frame_index: the analysed frame's index.
            time: the frame's time on the stream's timeline.
            embedding: its L2-normalised image embedding ([dim]).
            image: the frame, kept in the alert for snapshots.

        Returns:
            The alerts that fire on this frame and the rules that clear on it (usually none).
        """
        watch = self._watch(stream)
        if not watch.trackers:
            return [], []
        scores = watch.embeddings @ np.asarray(embedding, dtype=np.float32)
        fired, cleared = [], []
        for tracker, score in zip(watch.trackers, scores.tolist(), strict=True):
            fired_at, rule = tracker.last_fired, tracker.rule
            step = tracker.step(score, time)
            if step == FIRED:
                fired.append(
                    Alert(stream, time, self.clock(), rule.query, score, rule.threshold,
                          frame_index, image=image)
                )  # fmt: skip
            elif step == CLEARED:
                cleared.append(
                    AlertCleared(stream, time, self.clock(), rule.query, score, rule.threshold,
                                 frame_index, fired_at)
                )  # fmt: skip
        return fired, cleared


@dataclass(slots=True)
class _Watch:
    """The rules one stream is checked against: their query embeddings and trackers."""

    embeddings: np.ndarray
    trackers: list[AlertTracker]


def _rows(rules: tuple[AlertRule, ...], embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(rules):
        raise ValueError(
            f"embeddings must have one row per rule ({len(rules)}), got shape {embeddings.shape}"
        )
    return embeddings


def _same(rule: AlertRule) -> tuple:
    """What makes two rules the same rule on one stream (the streams they name aside)."""
    return (rule.query, rule.threshold, rule.frames, rule.cooldown_s)
