"""The archive's options: `ArchiveConfig` (`--archive DIR` and what it keeps)."""

from __future__ import annotations

from dataclasses import dataclass

from streamer.core.checks import duration_above, float_above
from streamer.core.options import Option, option, path_text, validate
from streamer.errors import ConfigError

__all__ = ["ArchiveConfig"]

_DURATION = "DURATION"


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    """Where a run remembers what it saw, and for how long.

    Attributes:
        path: the archive directory (made when missing; a str or an `os.PathLike`): recordings
            of the live streams and the index of moments (an embedded LanceDB database: no
            server to run).
        segment_s: length of a live stream's recording segment, seconds; a segment ends at the
            first keyframe after it (and at every reconnect).
        retain_s: recordings older than this are deleted with their index rows; None keeps
            them (within `max_gb`).
        max_gb: the archive's size limit; past it the oldest segments go first. None: no limit.
        index_every_s: a moment is indexed at every scene change, and at least this often per
            stream.
        clip_before_s: an alert's clip starts this long before the alert (its pre-roll).
        clip_after_s: ... and ends this long after it.
        summary_every_s: every this many seconds, the LLM summarises each live stream's last
            window (its captions, tags and alerts), citing its moments; None: no summaries.
            Needs an LLM (`RunConfig.llm`).
        summary: for file inputs, one LLM summary of each file and a WebVTT chapters file of
            its scene segments (titled by the LLM, or by their tags without one).
    """

    path: str
    segment_s: float = option(
        60.0,
        Option("--segment", "length of a live stream's recording segment (it ends at the next "
               "keyframe)", duration_above(0), metavar=_DURATION, group="archive"),
    )  # fmt: skip
    retain_s: float | None = option(
        None,
        Option("--retain", "delete recordings older than this, with their index rows and "
               "alert clips", duration_above(0), metavar=_DURATION, group="archive",
               default_text="keep them"),
    )  # fmt: skip
    max_gb: float | None = option(
        None,
        Option("--archive-max-gb", "keep the archive's recordings under this many GB (its "
               "index comes on top): the oldest segments go first",
               float_above(0, "GB"), metavar="GB", group="archive",
               default_text="no limit"),
    )  # fmt: skip
    index_every_s: float = option(
        10.0,
        Option("--index-every", "index a moment at every scene change and at least this often "
               "per stream", duration_above(0), metavar=_DURATION, group="archive"),
    )  # fmt: skip
    clip_before_s: float = option(
        5.0,
        Option("--clip-before", "an alert's clip (kept in DIR/clips) starts this long before "
               "the alert", duration_above(0), metavar=_DURATION, group="archive"),
    )  # fmt: skip
    clip_after_s: float = option(
        10.0,
        Option("--clip-after", "an alert's clip ends this long after the alert",
               duration_above(0), metavar=_DURATION, group="archive"),
    )  # fmt: skip
    summary_every_s: float | None = option(
        None,
        Option("--summary-every", "summarise each live stream's last DURATION with the LLM "
               "(captions, tags, alerts; citing its moments): kept in the archive, shown in "
               "the viewer, written to --jsonl", duration_above(0), metavar=_DURATION,
               group="archive", default_text="off"),
    )  # fmt: skip
    summary: bool = option(
        False,
        Option("--summary", "for files: one LLM summary of each file (in the archive and "
               "--jsonl), and WebVTT chapters of its scene segments, titled by the LLM or by "
               "their tags: NAME.chapters.vtt beside -o NAME.mp4, else in DIR/chapters/",
               kind="switch", group="archive"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        # A pathlib.Path is as good a folder name as a str; it is kept as its str.
        object.__setattr__(self, "path", path_text("archive path", self.path, "--archive"))
        if not self.path.strip():
            raise ConfigError(f"archive path must be a folder name, got {self.path!r} (--archive)")
        validate(self)
