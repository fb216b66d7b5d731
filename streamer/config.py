"""A run's configuration: `RunConfig`, one section per room (each declared in its room).

Only the CLI reads argv; everything below it receives one of these. The sections live with the
room they configure (`OutputConfig` in `streamer.outputs.options`, `AnalysisConfig` in
`streamer.analysis.options`, `ServeConfig` in `streamer.watch.web.options`, `SourceOptions`,
`LlmConfig`, `EncoderChoice`, `CaptionPolicy`, `AlertRule` in theirs) and are importable from
here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamer.analysis.alerts import AlertRule
from streamer.analysis.captioner import CaptionPolicy
from streamer.analysis.options import AnalysisConfig
from streamer.analysis.worker import EncoderChoice
from streamer.archive.options import ArchiveConfig
from streamer.cluster.options import ClusterConfig, cluster_address
from streamer.core.checks import (
    float_above,
    float_at_least,
    int_at_least,
    one_of,
    serve_address,
)
from streamer.core.options import Option, option, path_text, section, validate, wrong_type
from streamer.errors import ConfigError
from streamer.llm import LlmConfig
from streamer.outputs.options import STDOUT, OutputConfig, check_writable
from streamer.sources import SourceOptions, stream_names
from streamer.watch.mqtt.options import PASSWORD_ENV, URL_CHECK, MqttConfig
from streamer.watch.web.options import LOCAL_HOST, ServeConfig
from streamer.watch.webhook import check_webhook_url

__all__ = [
    "AnalysisConfig",
    "MqttConfig",
    "OutputConfig",
    "RunConfig",
    "ServeConfig",
    "check_writable",
]


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One run over one or more inputs.

    Attributes:
        input: a source spec (file, camera, URL), or several; each becomes a stream. A file
            may be given as an `os.PathLike` (a `pathlib.Path`); it is kept as its str.
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
        mqtt: the MQTT broker the run's events go to, with Home Assistant discovery
            (`MqttConfig`), None for none.
        archive: where the run remembers what it saw (`ArchiveConfig`), None for nowhere.
        cluster: the Ray cluster the run spreads over (`ClusterConfig`; `run_cluster` runs
            it), None for this process alone.
        stream_settings: stream name → its own settings, as the stream API changes them
            (`PATCH /api/streams/NAME`): `analysis.analyze_fps`, `analysis.labels` (a tuple),
            `alerts` (`streamer.watch.web.stream_body.AlertSpec`s: its whole set) and
            `captions` (a bool); applied before its first frame. A configuration file's
            `[[sources]]` entries give them.
        alert_settings: `AlertRule` field → value, the run's `--alert-threshold`,
            `--alert-frames` and `--alert-cooldown` as given: the alerts a stream is given of
            its own (the stream API, `[[sources]]`) take them as every `--alert` does.
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
    archive: ArchiveConfig | None = section(
        ArchiveConfig,
        Option("--archive", "remember what the run sees in DIR: live streams recorded (their "
               "own packets where MP4 holds them, else encoded once), and an index of moments "
               "(embedding, tags, caption, alerts, thumbnail) for `streamer search`",
               metavar="DIR"),
        group="archive", default=None,
    )  # fmt: skip
    webhook: str | None = option(
        None,
        Option("--webhook", "POST every alert as JSON with a JPEG snapshot to this http(s) "
               "URL, and every alert that clears (\"type\": \"alert_cleared\"); retried with "
               "backoff, never holds up the video", metavar="URL",
               group="alerts"),
    )  # fmt: skip
    mqtt: MqttConfig | None = section(
        MqttConfig,
        Option("--mqtt", "publish captions, alerts (on/off), statuses and pictures to this MQTT "
               "broker (pip install aiomqtt), with Home Assistant discovery: "
               "mqtt://[USER[:PASSWORD]@]HOST[:PORT], mqtts:// for TLS; a USER without "
               f"PASSWORD takes it from ${PASSWORD_ENV}", URL_CHECK,
               metavar="URL"),
        group="mqtt", default=None,
    )  # fmt: skip
    cluster: ClusterConfig | None = section(
        ClusterConfig,
        Option("--cluster", "run on a Ray cluster (pip install ray, the same version on every "
               "node): 'auto' (the cluster `ray start` made on this machine, or RAY_ADDRESS), "
               "ray://HOST:10001 (Ray Client) or HOST:6379 (the head node). Each node decodes "
               "its streams; a pool of --encoders replicas encodes for all",
               cluster_address(), metavar="ADDRESS"),
        group="cluster", default=None,
    )  # fmt: skip
    stream_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    alert_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Bad values first: a user fixing "nothing to write" should not then meet the next one.
        object.__setattr__(self, "input", _input_specs(self.input))
        validate(self)
        AlertRule("alert_settings", **self.alert_settings)  # a name or value it has not: refused
        self._check_alerts()
        if not self.inputs:
            raise ConfigError("no input: give at least one file, camera or URL")
        names = [name for name, _ in stream_names(self.inputs)]
        unknown = [name for name in self.stream_settings if name not in names]
        if unknown:
            raise ConfigError(f"stream settings for {unknown[0]!r}, which this run does not "
                              f"have; its streams are {', '.join(names)}")  # fmt: skip
        if self.archive is not None and self.archive.summary_every_s is not None and not self.llm:
            raise ConfigError(
                "--summary-every asks the LLM for summaries, but there is none: leave out "
                "--no-llm (and give --llm-url if the server is not LM Studio's), or leave out "
                "--summary-every"
            )
        if self.cluster is not None:
            self._check_cluster(self.cluster)
        shown = self.serve is not None or self.show or self.archive or self.mqtt
        if not self.outputs.paths() and not shown:
            raise ConfigError(
                "nothing to write or show: give at least one of -o/--output, --srt, --vtt, "
                "--jsonl, --archive, --serve, --show, --mqtt"
            )

    def _check_alerts(self) -> None:
        if self.webhook is None:
            return
        check_webhook_url(self.webhook)
        if not self.alerts:
            raise ConfigError(
                "--webhook sends alerts, but there are none: add --alert 'TEXT' (e.g. "
                "--alert 'a person at the door')"
            )

    def _check_cluster(self, cluster: ClusterConfig) -> None:
        if self.show:
            raise ConfigError(
                "--show opens windows on this machine's display, but with --cluster the frames "
                "stay on the nodes that decode them: watch the streams with --serve [HOST:]PORT "
                "instead, or leave out --cluster"
            )
        if self.outputs.jsonl == STDOUT:
            raise ConfigError(
                "--jsonl - writes to this process's standard output, but with --cluster the "
                "streams are written by processes on the cluster's nodes: name a file, e.g. "
                "--jsonl 'out/{stream}.jsonl', or leave out --cluster"
            )
        names = [name for name, _ in stream_names(self.inputs)]
        api = self.serve is not None and self.serve.token is not None  # streams may be added
        for pin in cluster.pins:
            if pin.stream not in names and not api:
                raise ConfigError(
                    f"--pin {pin}: this run has no stream named {pin.stream!r} (its streams: "
                    f"{', '.join(names)}); name an input NAME=SPEC to pin it (or, for a stream "
                    "the stream API will add, run with --serve and --serve-token)"
                )

    @property
    def inputs(self) -> tuple[str, ...]:
        """The inputs as a tuple, whether one or several were given."""
        return (self.input,) if isinstance(self.input, str) else tuple(self.input)


_INPUT = "a file path, camera or URL (a str or an os.PathLike), or a list of them"


def _input_specs(given: Any) -> str | tuple[str, ...]:
    """`RunConfig.input` as text: one spec, or a tuple of them (a `pathlib.Path` as its str)."""
    if isinstance(given, list | tuple):
        return tuple(_input_spec(spec) for spec in given)
    return _input_spec(given)


def _input_spec(spec: Any) -> str:
    if isinstance(spec, int) and not isinstance(spec, bool):
        raise wrong_type("input", _INPUT, spec, fix=f"a camera's index goes as text, '{spec}'")
    try:
        return path_text("input", spec)
    except ConfigError:
        raise wrong_type("input", _INPUT, spec) from None
