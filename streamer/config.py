"""Run configuration: frozen dataclasses, validated on construction.

Only the CLI reads argv; everything below it receives one of these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from streamer.analysis.alerts import AlertRule
from streamer.analysis.captioner import CaptionPolicy
from streamer.analysis.labels import DEFAULT_PROMPT, load_labels
from streamer.analysis.worker import EncoderChoice
from streamer.core.batcher import BatchPolicy
from streamer.core.checks import (
    float_above,
    float_at_least,
    int_at_least,
    int_in,
    one_of,
    rate_or_all,
    serve_address,
    split_serve_address,
    template_with,
)
from streamer.core.options import Option, option, section, validate
from streamer.errors import ConfigError
from streamer.llm import LlmConfig
from streamer.sources import SourceOptions
from streamer.watch.webhook import check_webhook_url

# libx264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")  # fmt: skip
LOCAL_HOST = "127.0.0.1"  # the viewer's default: this machine only


def _every_frame(rate: Any) -> float | None:
    """`--analyze-fps all` (or None) analyses every frame: the field holds None."""
    return None if rate is None or rate == "all" else rate


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    """What is analysed and how.

    Attributes:
        analyze_fps: analysed frames per media second; None analyses every frame.
        batch: micro-batching of analysed frames onto the encoder.
        top_k: tags kept per analysed frame.
        labels: zero-shot vocabulary; None for the shipped default.
        prompt: text template per label; must contain "{label}".
        text_cache: folder for cached label text embeddings; None computes them every run.
    """

    analyze_fps: float | None = option(
        2.0,
        Option("--analyze-fps", "analysed frames per second, > 0, or 'all'", rate_or_all(),
               to_field=_every_frame),
    )  # fmt: skip
    batch: BatchPolicy = section(BatchPolicy)
    top_k: int = option(3, Option("--top-k", "tags per analysed frame", int_at_least(1)))
    labels: tuple[str, ...] | None = option(
        None,
        Option("--labels", "label file (one per line) or 'dog, cat, person'",
               to_field=load_labels, default_text="the shipped vocabulary"),
    )  # fmt: skip
    prompt: str = option(
        DEFAULT_PROMPT,
        Option("--label-prompt", "text template per label, with {label} where the label goes",
               template_with("label")),
    )  # fmt: skip
    text_cache: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "analyze_fps", _every_frame(self.analyze_fps))
        validate(self)


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """Where results go (files). A run needs at least one of them, or a viewer (`RunConfig`).

    Attributes:
        video: annotated video file (H.264 MP4 by default).
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
        None, Option("--output", "annotated video (MP4, H.264; audio copied)", short="-o")
    )
    srt: str | None = option(None, Option("--srt", "SubRip subtitles, one cue per caption"))
    vtt: str | None = option(None, Option("--vtt", "WebVTT subtitles, one cue per caption"))
    jsonl: str | None = option(
        None,
        Option("--jsonl", "JSON Lines: a record per analysed frame, per caption and per alert"),
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
        return [p for p in (self.video, self.srt, self.vtt, self.jsonl) if p]

    def for_stream(self, stream: str) -> OutputConfig:
        """This configuration with `{stream}` in each path replaced by the stream's name."""

        def fill(path: str | None) -> str | None:
            return path.replace("{stream}", stream) if path else None

        return replace(self, video=fill(self.video), srt=fill(self.srt), vtt=fill(self.vtt),
                       jsonl=fill(self.jsonl))  # fmt: skip

    def check(self, streams: list[str], inputs: tuple[str, ...] = ()) -> None:
        """Fail fast, before any work, when the outputs cannot serve these streams (or would
        overwrite one of the `inputs`)."""
        if len(streams) > 1:
            shared = [p for p in self.paths() if "{stream}" not in p]
            if shared:
                raise ConfigError(
                    f"{len(streams)} streams would write the same file {shared[0]!r}: put "
                    "'{stream}' in output names, e.g. -o 'out/{stream}.mp4'"
                )
        sources = {os.path.realpath(spec) for spec in inputs if os.path.exists(spec)}
        for stream in streams:
            for path in self.for_stream(stream).paths():
                check_writable(path)
                if os.path.realpath(path) in sources:
                    raise ConfigError(
                        f"output {path!r} is an input of this run; choose another name"
                    )


def check_writable(path: str) -> None:
    """Fail fast, before any work, when an output cannot be created."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"output {path!r} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise ConfigError(f"output {path!r}: folder {folder!r} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"output {path!r}: folder {folder!r} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"output {path!r} exists and is not writable")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """The web viewer (`--serve`).

    Attributes:
        host: address to bind; 127.0.0.1 (this machine only) unless told otherwise.
        port: TCP port; 0 picks a free one.
        token: when set, every route needs `Authorization: Bearer TOKEN` (or `?token=`).
    """

    host: str = LOCAL_HOST
    port: int = 8080
    token: str | None = option(
        None,
        Option("--serve-token", "require this token on every route of --serve: open the page "
               "as /?token=TOKEN, tools send 'Authorization: Bearer TOKEN' (a config file keeps "
               "it off the command line)", metavar="TOKEN", secret=True),
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"serve port must be in 0..65535, got {self.port} (--serve)")
        if self.token is not None and not self.token.strip():
            raise ConfigError("--serve-token must not be empty; leave it out for no token")

    @classmethod
    def at(cls, address: str, token: str | None = None) -> ServeConfig:
        """The viewer at `[HOST:]PORT` (`--serve`), HOST defaulting to this machine only."""
        try:
            host, port = split_serve_address(address, LOCAL_HOST)
        except ValueError as exc:
            raise ConfigError(f"--serve must be [HOST:]PORT, got {address!r}") from exc
        return cls(host=host, port=port, token=token)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One run over one or more inputs.

    Attributes:
        input: a source spec (file, camera, URL), or several; each becomes a stream.
        outputs: where results go; with several streams, paths contain "{stream}".
        encoder: which image encoder to load (one, shared by every stream).
        analysis: sampling, batching, tags.
        captions: caption timing.
        live: None picks the contract by source kind (files: every frame; cameras and URLs:
            freshest frame wins); True treats every input as live (files are paced at their
            frame rate); False delivers every frame of every input (`--no-drop`).
        sources: how live sources connect, time out and reconnect.
        llm: the LLM server for captions; None makes captions from tags only.
        llm_max_in_flight: caption requests per live stream at once.
        caption_wait: seconds a file's output waits for the pending caption of its time before
            it goes on with the caption from tags.
        queue_frames: frames buffered between stages of a file stream (bounds memory).
        status_every: seconds between status tables on the console for live runs.
        serve: the web viewer, None for none.
        show: a window per stream on this machine's display.
        alerts: text queries to watch for (`streamer.analysis.alerts`); they need a CLIP encoder.
        webhook: an http(s) URL every alert is POSTed to, None for none.
    """

    input: str | tuple[str, ...]
    outputs: OutputConfig = section(OutputConfig, group="outputs")
    encoder: EncoderChoice = section(EncoderChoice, group="encoder")
    analysis: AnalysisConfig = section(AnalysisConfig, group="analysis")
    captions: CaptionPolicy = section(CaptionPolicy, group="captions")
    live: bool | None = option(
        None,
        Option("--live", "treat every input as live: freshest frame wins (files play at their "
               "frame rate)", kind="const", const=True, group="contract"),
        Option("--no-drop", "deliver every frame of every input, live ones included "
               "(backpressure)", kind="const", const=False, group="contract"),
    )  # fmt: skip
    sources: SourceOptions = section(SourceOptions, group="live-sources")
    llm: LlmConfig | None = section(
        LlmConfig, Option("--no-llm", "captions from tags only", kind="negated"),
        group="llm-captions", default=None,
    )  # fmt: skip
    llm_max_in_flight: int = option(
        1,
        Option("--llm-max-in-flight", "requests at once per live stream", int_at_least(1),
               group="llm-captions"),
    )  # fmt: skip
    caption_wait: float = option(
        10.0,
        Option("--caption-wait", "seconds a file's output waits for its pending caption",
               float_at_least(0, "seconds"), group="llm-captions"),
    )  # fmt: skip
    queue_frames: int = option(
        32, Option("--queue-frames", "frames buffered in flight", int_at_least(2))
    )
    status_every: float = option(
        5.0,
        Option("--status-every", "seconds between status tables", float_above(0, "seconds"),
               group="contract"),
    )  # fmt: skip
    serve: ServeConfig | None = section(
        ServeConfig,
        Option("--serve", "serve a page with every stream's live video, captions and status, "
               "plus /metrics (Prometheus), /healthz and JSON at /api/status; HOST defaults to "
               "127.0.0.1 (this machine only): 0.0.0.0:8080 opens it to the network",
               serve_address(LOCAL_HOST), metavar="[HOST:]PORT"),
        group="web-viewer", default=None,
    )  # fmt: skip
    show: bool | str = option(
        False,
        Option("--show", "show the streams in a window on this display (one per stream up to "
               "4, else a grid; 'grid': always a grid). Keys: q/Esc quit, space pause, "
               "o overlay, h help", one_of("grid"), optional=True, const=True, metavar="grid",
               group="display"),
    )  # fmt: skip
    alerts: tuple[AlertRule, ...] = section(
        AlertRule,
        Option("--alert", "fire an alert when analysed frames look like QUERY, e.g. 'a person "
               "at the door' (repeatable). 'door=a person' watches only the stream named door: "
               "the part before the first '=' is a stream name only when it names one of this "
               "run's streams, otherwise the whole value is the query. Alerts go to --jsonl, "
               "the overlay and --webhook", kind="list", metavar="[STREAM=]QUERY"),
        group="alerts", default=(), many=True,
    )  # fmt: skip
    webhook: str | None = option(
        None,
        Option("--webhook", "POST every alert as JSON with a JPEG snapshot to this http(s) "
               "URL; retried with backoff, never holds up the video", metavar="URL",
               group="alerts"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        # Bad values first: a user fixing "nothing to write" should not then meet the next one.
        validate(self)
        self._check_alerts()
        if not self.inputs:
            raise ConfigError("no input: give at least one file, camera or URL")
        if not self.outputs.paths() and self.serve is None and not self.show:
            raise ConfigError(
                "nothing to write or show: give at least one of -o/--output, --srt, --vtt, "
                "--jsonl, --serve, --show"
            )

    def _check_alerts(self) -> None:
        if not all(isinstance(rule, AlertRule) for rule in self.alerts):
            raise ConfigError(f"alerts must be AlertRule objects, got {self.alerts!r}")
        if self.webhook is None:
            return
        check_webhook_url(self.webhook)
        if not self.alerts:
            raise ConfigError(
                "--webhook sends alerts, but there are none: add --alert 'TEXT' (e.g. "
                "--alert 'a person at the door')"
            )

    @property
    def inputs(self) -> tuple[str, ...]:
        """The inputs as a tuple, whether one or several were given."""
        return (self.input,) if isinstance(self.input, str) else tuple(self.input)
