"""Where a run's results go: `OutputConfig`, the outputs section of its options."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Any

from streamer.core.checks import int_in, one_of, why_unwritable
from streamer.core.options import Option, option, validate
from streamer.errors import ConfigError

__all__ = ["STDOUT", "X264_PRESETS", "OutputConfig", "check_writable", "outputs_for"]

# The name that sends JSON Lines to standard output (`--jsonl -`, for `| jq`): every stream's
# records go there, each naming its stream. The other outputs are files only.
STDOUT = "-"

# libx264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")  # fmt: skip


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """Where results go (files). A run needs at least one of them, or a viewer (`RunConfig`).

    Attributes:
        video: annotated video file (H.264 MP4 by default). Each path may be a str or an
            `os.PathLike` (a `pathlib.Path`), kept as its str.
        srt, vtt: subtitle files, one cue per caption.
        jsonl: JSON Lines events: one record per analysed frame and per caption.
        preset, crf: libx264 speed preset and quality.
        copy_audio: copy the input's audio into the video output.
        fragmented: write the MP4 in fragments (plays up to the last one after a crash, a
            `kill -9` or a full disk); None: yes for live streams, no for files.
        keyframe_seconds: most seconds between keyframes of a fragmented MP4 (what a crash
            can lose at most).
    """

    video: str | None = option(
        None,
        Option("--output", "annotated video (MP4, H.264; a file's audio copied, not a live "
               "stream's)", short="-o"),
        path=True,
    )  # fmt: skip
    srt: str | None = option(
        None, Option("--srt", "SubRip subtitles, one cue per caption"), path=True
    )
    vtt: str | None = option(
        None, Option("--vtt", "WebVTT subtitles, one cue per caption"), path=True
    )
    jsonl: str | None = option(
        None,
        Option(
            "--jsonl",
            "JSON Lines: a record per analysed frame, per caption and per alert "
            "('-': standard output, every stream's records, for | jq)",
        ),
        path=True,
    )
    preset: str = option(
        "veryfast",
        Option("--preset", "x264 preset, ultrafast..placebo: slower is smaller for the same "
               "quality", one_of(*X264_PRESETS)),
    )  # fmt: skip
    crf: int = option(
        20, Option("--crf", "x264 quality, 0..51: lower is better and bigger", int_in(0, 51))
    )
    copy_audio: bool = option(
        True, Option("--no-audio", "do not copy the input's audio", kind="negated")
    )
    fragmented: bool | None = option(
        None,
        Option("--fragmented", "write the MP4 in fragments, a keyframe every 2 s: it plays up "
               "to the last fragment after a crash, kill -9 or a full disk", kind="toggle",
               default_text="on for live streams, off for files"),
    )  # fmt: skip
    keyframe_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.keyframe_seconds > 0:
            raise ConfigError(f"keyframe_seconds must be > 0, got {self.keyframe_seconds}")
        validate(self)

    def paths(self) -> list[str]:
        return [path for _, path in self.flagged_paths()]

    def for_stream(self, stream: str) -> OutputConfig:
        """This configuration with `{stream}` in each path replaced by the stream's name."""

        def fill(path: str | None) -> str | None:
            return path.replace("{stream}", stream) if path else None

        return replace(self, video=fill(self.video), srt=fill(self.srt), vtt=fill(self.vtt),
                       jsonl=fill(self.jsonl))  # fmt: skip

    def check(self, streams: list[str], inputs: tuple[str, ...] = ()) -> None:
        """Fail fast, before any work, when the outputs cannot serve these streams (or would
        overwrite one of the `inputs`)."""
        self._check_stdout()
        if len(streams) > 1:
            shared = [p for p in self.paths() if "{stream}" not in p and p != STDOUT]
            if shared:
                raise ConfigError(
                    f"{len(streams)} streams would write the same file {shared[0]!r}: put "
                    "'{stream}' in output names, e.g. -o 'out/{stream}.mp4'"
                )
        for flag, path in self.flagged_paths():
            unknown = sorted(set(re.findall(r"\{(\w*)\}", path)) - {"stream"})
            if unknown:
                raise ConfigError(f"{flag} {path!r}: {{{unknown[0]}}} is not a placeholder; "
                                  "the one output names know is {stream}")  # fmt: skip
        if self.video is not None and not os.path.splitext(self.video)[1]:
            raise ConfigError(f"-o {self.video!r} has no extension to tell the video's "
                              "container: end it with .mp4 (or .mkv, .mov)")  # fmt: skip
        sources = {os.path.realpath(spec) for spec in inputs if os.path.exists(spec)}
        for stream in streams:
            taken: dict[str, str] = {}
            for flag, path in self.for_stream(stream).flagged_paths():
                if path == STDOUT:
                    continue
                check_writable(path)
                where = os.path.realpath(path)
                if where in sources:
                    raise ConfigError(
                        f"output {path!r} is an input of this run; choose another name"
                    )
                if where in taken:
                    raise ConfigError(f"{taken[where]} and {flag} both name {path!r}: each "
                                      "output needs a file of its own")  # fmt: skip
                taken[where] = flag

    def _check_stdout(self) -> None:
        for flag, path in self.flagged_paths():
            if path == STDOUT and flag != "--jsonl":
                raise ConfigError(f"{flag} -: only --jsonl writes to standard output ('-'); "
                                  f"give {flag} a file name")  # fmt: skip

    def flagged_paths(self) -> list[tuple[str, str]]:
        """(the option's flag, its path) of each output set."""
        given = (("-o", self.video), ("--srt", self.srt), ("--vtt", self.vtt),
                 ("--jsonl", self.jsonl))  # fmt: skip
        return [(flag, path) for flag, path in given if path]


def check_writable(path: str) -> None:
    """Fail fast, before any work, when an output cannot be created."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"output {path!r} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise ConfigError(f"output {path!r}: folder {folder!r} does not exist; create it first")
    why = why_unwritable(folder)
    if why is not None:
        raise ConfigError(f"output {path!r}: cannot write there ({why}); write the output "
                          "somewhere else, or make the folder writable")  # fmt: skip
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"output {path!r} exists and is not writable")


_OUTPUTS = {"outputs.video": "video", "outputs.srt": "srt", "outputs.vtt": "vtt",
            "outputs.jsonl": "jsonl"}  # fmt: skip
"""A stream's own output settings (`streamer.control`'s paths) → `OutputConfig` fields."""


def outputs_for(
    run_outputs: OutputConfig, name: str, spec: str, settings: dict[str, Any],
    taken: dict[str, OutputConfig],
) -> OutputConfig:  # fmt: skip
    """A new stream's outputs: the run's `{stream}` templates (a path without one is the run's
    first stream's), and the paths its request gave (templates too); checked writable and used
    by none of the streams in `taken` (name → its outputs).

    Raises:
        ConfigError: an output that cannot be written, or that another stream writes.
    """
    kept = {f: _template(getattr(run_outputs, f)) for f in _OUTPUTS.values()}
    given = {field: settings[path] for path, field in _OUTPUTS.items() if path in settings}
    outputs = replace(run_outputs, **{**kept, **given}).for_stream(name)
    outputs.check([name], (spec,))
    owners = {os.path.realpath(path): other for other, its in taken.items()
              for path in its.paths()}  # fmt: skip
    for path in outputs.paths():
        other = owners.get(os.path.realpath(path))
        if other is not None:
            raise ConfigError(
                f"output {path!r} is written by stream {other!r}; give this stream its own "
                "(a path, or a template with {stream})"
            )
    return outputs


def _template(path: str | None) -> str | None:
    """The run's output path if it is a template for every stream, else None."""
    return path if path and "{stream}" in path else None
