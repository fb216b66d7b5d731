"""Run configuration: frozen dataclasses, validated on construction.

Only the CLI reads argv; everything below it receives one of these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from streamer.analysis.alerts import AlertRule
from streamer.analysis.captioner import CaptionPolicy
from streamer.analysis.labels import DEFAULT_PROMPT
from streamer.analysis.worker import EncoderChoice
from streamer.core.batcher import BatchPolicy
from streamer.errors import ConfigError
from streamer.llm import LlmConfig
from streamer.sources import SourceOptions
from streamer.watch.webhook import check_webhook_url


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

    analyze_fps: float | None = 2.0
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    top_k: int = 3
    labels: tuple[str, ...] | None = None
    prompt: str = DEFAULT_PROMPT
    text_cache: str | None = None

    def __post_init__(self) -> None:
        if self.analyze_fps is not None and not self.analyze_fps > 0:
            raise ConfigError(
                f"analyze_fps must be > 0 (or 'all'), got {self.analyze_fps} (--analyze-fps)"
            )
        if self.top_k < 1:
            raise ConfigError(f"top_k must be ≥ 1, got {self.top_k} (--top-k)")
        if "{label}" not in self.prompt:
            raise ConfigError(
                f"prompt must contain '{{label}}', got {self.prompt!r} (--label-prompt)"
            )


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

    video: str | None = None
    srt: str | None = None
    vtt: str | None = None
    jsonl: str | None = None
    preset: str = "veryfast"
    crf: int = 20
    copy_audio: bool = True
    fragmented: bool | None = None
    keyframe_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.keyframe_seconds > 0:
            raise ConfigError(f"keyframe_seconds must be > 0, got {self.keyframe_seconds}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf must be in 0..51, got {self.crf} (--crf)")

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

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"serve port must be in 0..65535, got {self.port} (--serve)")


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
    outputs: OutputConfig = field(default_factory=OutputConfig)
    encoder: EncoderChoice = field(default_factory=EncoderChoice)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    captions: CaptionPolicy = field(default_factory=CaptionPolicy)
    live: bool | None = None
    sources: SourceOptions = field(default_factory=SourceOptions)
    llm: LlmConfig | None = None
    llm_max_in_flight: int = 1
    caption_wait: float = 10.0
    queue_frames: int = 32
    status_every: float = 5.0
    serve: ServeConfig | None = None
    show: bool = False
    alerts: tuple[AlertRule, ...] = ()
    webhook: str | None = None

    def __post_init__(self) -> None:
        # Bad values first: a user fixing "nothing to write" should not then meet the next one.
        if self.queue_frames < 2:
            raise ConfigError(f"queue_frames must be ≥ 2, got {self.queue_frames} (--queue-frames)")
        if self.llm_max_in_flight < 1:
            raise ConfigError(
                f"llm_max_in_flight must be ≥ 1, got {self.llm_max_in_flight} (--llm-max-in-flight)"
            )
        if not self.caption_wait >= 0:
            raise ConfigError(
                f"caption_wait must be ≥ 0 s, got {self.caption_wait} (--caption-wait)"
            )
        if not self.status_every > 0:
            raise ConfigError(
                f"status_every must be > 0 s, got {self.status_every} (--status-every)"
            )
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
