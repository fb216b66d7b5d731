"""`streamer run`: flags → RunConfig → the file pipeline → summary and exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from pathlib import Path

from encoders import EncoderError, UnknownEncoderError
from encoders.base import PRECISIONS
from encoders.registry import kinds, parse_model_name
from streamer.analysis.alerts import DEFAULT_ALERT_THRESHOLD, AlertRule
from streamer.analysis.captioner import CaptionPolicy
from streamer.analysis.labels import DEFAULT_PROMPT, load_labels
from streamer.analysis.worker import EncoderChoice
from streamer.cli import config_file
from streamer.cli.main import (
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    run_with_signals,
)
from streamer.config import AnalysisConfig, OutputConfig, RunConfig, ServeConfig
from streamer.core.batcher import BatchPolicy
from streamer.core.checks import (
    float_above,
    float_at_least,
    float_in,
    http_url,
    int_at_least,
    int_in,
    int_or_auto,
    one_of,
    rate_or_all,
    serve_address,
    split_serve_address,
    template_with,
    torch_device,
)
from streamer.core.samples import cache_dir
from streamer.errors import ConfigError, SourceError
from streamer.llm import DEFAULT_URL, LlmConfig
from streamer.outputs import SinkError
from streamer.pipeline import RunSummary, run_pipeline
from streamer.sources import SourceOptions, split_stream_name
from streamer.sources.camera import camera_stream_name
from streamer.sources.network import url_stream_name
from streamer.watch.window import show_mode

log = logging.getLogger("streamer")

# libx264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")  # fmt: skip
SECONDS = "seconds"


def add_speedup_flags(group: argparse._ActionsContainer) -> None:
    """--cuda-graphs and --compile, shared by `streamer run` and `streamer bench encoders`."""
    group.add_argument(
        "--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
        help="replay the encoder as CUDA graphs recorded for batch sizes 1/4/16/64/256 "
        "(default: on with CUDA; does nothing on a CPU)",
    )  # fmt: skip
    group.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=False,
        help="torch.compile the encoder (default: off; compiling takes tens of seconds)",
    )  # fmt: skip


def add_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="annotate a video file",
        description="Annotate a video file: zero-shot tags, scene changes and captions drawn on "
        "every frame, written as video, subtitles and JSON Lines.",
    )
    run.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="video file, camera (0, /dev/video0) or URL (rtsp://, http(s)://, .m3u8), "
        "optionally named: door=rtsp://...; several inputs run as streams of one process",
    )  # fmt: skip
    run.add_argument(
        "--sources", metavar="FILE",
        help="more inputs, one per line (NAME=SPEC or SPEC, # comments)",
    )  # fmt: skip
    run.add_argument(
        "--config", metavar="FILE",
        help="TOML file of these options and [[sources]] (README: Configuration file); "
        "flags given here override it, inputs given here are added",
    )  # fmt: skip
    out = run.add_argument_group(
        "outputs (at least one; with several inputs put {stream} in the names)"
    )
    out.add_argument("-o", "--output", help="annotated video (MP4, H.264; audio copied)")
    out.add_argument("--srt", help="SubRip subtitles, one cue per caption")
    out.add_argument("--vtt", help="WebVTT subtitles, one cue per caption")
    out.add_argument(
        "--jsonl", help="JSON Lines: a record per analysed frame, per caption and per alert"
    )
    out.add_argument(
        "--preset", default="veryfast", type=one_of(*X264_PRESETS),
        help="x264 preset, ultrafast..placebo: slower is smaller for the same quality "
        "(default: veryfast)",
    )  # fmt: skip
    out.add_argument(
        "--crf", type=int_in(0, 51), default=20,
        help="x264 quality, 0..51: lower is better and bigger (default: 20)",
    )  # fmt: skip
    out.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    out.add_argument(
        "--fragmented", action=argparse.BooleanOptionalAction, default=None,
        help="write the MP4 in fragments, a keyframe every 2 s: it plays up to the last fragment "
        "after a crash, kill -9 or a full disk (default: on for live streams, off for files)",
    )  # fmt: skip
    enc = run.add_argument_group("encoder")
    enc.add_argument(
        "--encoder", default="clip", type=one_of(*kinds()),
        help=" | ".join(kinds()) + " (default: clip)",
    )  # fmt: skip
    enc.add_argument(
        "--model", help="model of the encoder, e.g. ViT-B/32, ViT-B-32:laion2b_s34b_b79k, small"
    )
    enc.add_argument(
        "--weights",
        default="pretrained",
        help="pretrained | random | auto (pretrained if available, else random, labelled) | PATH",
    )
    enc.add_argument(
        "--device", type=torch_device(), help="cpu | cuda | cuda:N (default: cuda when available)"
    )
    enc.add_argument(
        "--precision", default="auto", type=one_of("auto", *PRECISIONS),
        help="auto | fp32 | fp16 | bf16 (default auto: fp16 on CUDA, fp32 on a CPU)",
    )  # fmt: skip
    add_speedup_flags(enc)
    ana = run.add_argument_group("analysis")
    ana.add_argument(
        "--analyze-fps", default=2.0, type=rate_or_all(),
        help="analysed frames per second, > 0, or 'all' (default 2)",
    )  # fmt: skip
    ana.add_argument(
        "--max-batch", type=int_at_least(1), default=8, help="frames per encoder batch, ≥ 1"
    )
    ana.add_argument(
        "--max-wait-ms", type=float_at_least(0, "milliseconds"), default=50.0,
        help="batch deadline in ms, ≥ 0",
    )  # fmt: skip
    ana.add_argument(
        "--adaptive-batch", action=argparse.BooleanOptionalAction, default=False,
        help="batch size follows the load: grows (to --batch-ceiling) while frames back up, "
        "halves when a batch takes longer than --latency-budget-ms (default: off)",
    )  # fmt: skip
    ana.add_argument(
        "--batch-ceiling", type=int_at_least(1), default=64,
        help="largest adaptive batch, ≥ --max-batch (default 64)",
    )  # fmt: skip
    ana.add_argument(
        "--latency-budget-ms", type=float_above(0, "milliseconds"), default=200.0,
        help="adaptive batching's budget per batch in ms, > --max-wait-ms (default 200)",
    )  # fmt: skip
    ana.add_argument("--labels", help="label file (one per line) or 'dog, cat, person'")
    ana.add_argument(
        "--label-prompt", default=DEFAULT_PROMPT, type=template_with("label"),
        help="text template per label, with {label} where the label goes",
    )  # fmt: skip
    ana.add_argument(
        "--top-k", type=int_at_least(1), default=3, help="tags per analysed frame, ≥ 1"
    )
    cap = run.add_argument_group("captions")
    cap.add_argument(
        "--caption-interval", type=float_at_least(0, SECONDS), default=2.0,
        help="min seconds between captions, ≥ 0",
    )  # fmt: skip
    cap.add_argument(
        "--caption-max-age", type=float_at_least(0, SECONDS, allow_inf=True), default=10.0,
        help="refresh a caption after this many seconds, ≥ --caption-interval (inf: never)",
    )  # fmt: skip
    cap.add_argument(
        "--scene-threshold", type=float_in(0, 2, "a cosine distance", low_open=True),
        default=0.15, help="cosine distance that counts as a new scene, > 0 and ≤ 2",
    )  # fmt: skip
    llm = run.add_argument_group("LLM captions (LM Studio or any OpenAI-compatible server)")
    llm.add_argument(
        "--llm-url", default=DEFAULT_URL, type=http_url(),
        help=f"server base URL (default {DEFAULT_URL})",
    )  # fmt: skip
    llm.add_argument("--llm-model", help="model to ask (default: the one the server has loaded)")
    llm.add_argument("--llm-api-key", help="API key, if the server wants one")
    llm.add_argument("--no-llm", action="store_true", help="captions from tags only")
    llm.add_argument(
        "--llm-max-in-flight", type=int_at_least(1), default=1,
        help="requests at once per live stream, ≥ 1",
    )  # fmt: skip
    llm.add_argument(
        "--caption-wait", type=float_at_least(0, SECONDS), default=10.0,
        help="seconds a file's output waits for its pending caption, ≥ 0 (default 10)",
    )  # fmt: skip
    llm.add_argument("--prompt", help="user prompt template ({tags} {stream} {time}), or a file")
    llm.add_argument("--system-prompt", help="system prompt, or a file")
    mode = run.add_argument_group("contract")
    live = mode.add_mutually_exclusive_group()
    live.add_argument(
        "--live", dest="live", action="store_const", const=True, default=None,
        help="treat every input as live: freshest frame wins (files play at their frame rate)",
    )  # fmt: skip
    live.add_argument(
        "--no-drop", dest="live", action="store_const", const=False,
        help="deliver every frame of every input, live ones included (backpressure)",
    )  # fmt: skip
    mode.add_argument(
        "--status-every", type=float_above(0, SECONDS), default=5.0,
        help="seconds between status tables, > 0",
    )  # fmt: skip
    display = run.add_argument_group("display")
    display.add_argument(
        "--show", nargs="?", const=True, choices=("grid",), metavar="grid",
        help="show the streams in a window on this display (one per stream up to 4, else a "
        "grid; 'grid': always a grid). Keys: q/Esc quit, space pause, o overlay, h help",
    )  # fmt: skip
    _add_alert_arguments(run)
    _add_serve_arguments(run)
    net = run.add_argument_group("live sources")
    net.add_argument(
        "--rtsp-transport", default="tcp", type=one_of("tcp", "udp"),
        help="tcp | udp (default: tcp)",
    )  # fmt: skip
    net.add_argument(
        "--open-timeout", type=float_above(0, SECONDS), default=5.0,
        help="seconds to open a source, > 0",
    )  # fmt: skip
    net.add_argument(
        "--read-timeout", type=float_above(0, SECONDS), default=5.0,
        help="seconds without a frame = stalled, reopen; > 0",
    )  # fmt: skip
    net.add_argument(
        "--reconnect-initial", type=float_above(0, SECONDS), default=0.5,
        help="first reconnect delay in seconds, > 0",
    )  # fmt: skip
    net.add_argument(
        "--reconnect-max", type=float_above(0, SECONDS), default=10.0,
        help="longest reconnect delay in seconds, ≥ --reconnect-initial",
    )  # fmt: skip
    net.add_argument(
        "--reconnect-attempts", type=int_at_least(1), default=None,
        help="give a source up after this many failed attempts in a row, ≥ 1 (default: never)",
    )  # fmt: skip
    dec = run.add_argument_group("decode")
    dec.add_argument(
        "--hwaccel", default="none", choices=("none", "cuda", "auto"),
        help="decode on the GPU with NVDEC: cuda (fails at start when CUDA is missing), auto "
        "(CUDA when it works, else the CPU), none (default)",
    )  # fmt: skip
    dec.add_argument(
        "--decode-workers", default=0, type=int_or_auto(0), metavar="N|auto",
        help="processes that decode files and network streams (shared-memory frames); 0 "
        "(default) decodes in this process; auto: when there are many streams for the cores",
    )  # fmt: skip
    run.add_argument(
        "--queue-frames", type=int_at_least(2), default=32, help="frames buffered in flight, ≥ 2"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--no-cache", action="store_true", help="do not cache label text embeddings on disk"
    )
    run.set_defaults(handler=run_command)
    config_file.install(run)  # --config FILE: the file's values become this parse's defaults


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Build and validate the run configuration; raises ConfigError naming the flag.

    Each flag's own value was checked when it was parsed (its argparse `type`, which a
    configuration file's value goes through too); what is left are the checks between flags,
    named as the user gave them: the flag, and the file's key where a file set it.
    """
    _check_flag_pairs(args)
    _check_model(args)
    fps = None if args.analyze_fps == "all" else args.analyze_fps
    try:
        batch = BatchPolicy(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                            adaptive=args.adaptive_batch, batch_ceiling=args.batch_ceiling,
                            latency_budget_ms=args.latency_budget_ms)  # fmt: skip
        captions = CaptionPolicy(
            min_interval=args.caption_interval,
            max_age=args.caption_max_age,
            scene_threshold=args.scene_threshold,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    inputs = tuple(args.inputs) + _sources_file(args.sources)
    return RunConfig(
        input=inputs,
        outputs=OutputConfig(
            video=args.output,
            srt=args.srt,
            vtt=args.vtt,
            jsonl=args.jsonl,
            preset=args.preset,
            crf=args.crf,
            copy_audio=not args.no_audio,
            fragmented=args.fragmented,
        ),
        encoder=EncoderChoice(
            kind=args.encoder,
            model=args.model,
            weights=args.weights,
            device=args.device,
            precision=args.precision,
            cuda_graphs=args.cuda_graphs,
            compile=args.compile,
        ),
        analysis=AnalysisConfig(
            analyze_fps=fps,
            batch=batch,
            top_k=args.top_k,
            labels=load_labels(args.labels) if args.labels else None,
            prompt=args.label_prompt,
            text_cache=None if args.no_cache else str(cache_dir() / "text"),
        ),
        captions=captions,
        queue_frames=args.queue_frames,
        live=args.live,
        llm=None if args.no_llm else _llm_config(args),
        llm_max_in_flight=args.llm_max_in_flight,
        caption_wait=args.caption_wait,
        sources=SourceOptions(
            rtsp_transport=args.rtsp_transport,
            open_timeout=args.open_timeout,
            read_timeout=args.read_timeout,
            backoff_initial=args.reconnect_initial,
            backoff_cap=args.reconnect_max,
            max_attempts=args.reconnect_attempts,
            hwaccel=args.hwaccel,
            decode_workers=args.decode_workers,
        ),
        status_every=args.status_every,
        alerts=_alert_rules(args, inputs),
        webhook=args.webhook,
        show=show_mode(args.show),
        serve=_serve_config(args.serve, args.serve_token),
    )


# Flags that must stay in order: (larger, smaller, relation, only with this switch).
_ORDERED_FLAGS = (
    ("batch_ceiling", "max_batch", "≥", "adaptive_batch"),
    ("latency_budget_ms", "max_wait_ms", ">", "adaptive_batch"),  # a batch may wait to fill
    ("caption_max_age", "caption_interval", "≥", None),
    ("reconnect_max", "reconnect_initial", "≥", None),
)


def _check_flag_pairs(args: argparse.Namespace) -> None:
    """The checks between two flags, which no argparse `type` can make, in the flags' names."""
    for larger, smaller, relation, switch in _ORDERED_FLAGS:
        if switch is not None and not getattr(args, switch):
            continue
        high, low = getattr(args, larger), getattr(args, smaller)
        if high > low or (relation == "≥" and high == low):
            continue
        when = f" with {_named(args, switch, '')}" if switch else ""
        raise ConfigError(
            f"{_named(args, larger, f'{high:g}')} must be {relation} "
            f"{_named(args, smaller, f'{low:g}')}{when}; raise {_flag(larger)} or lower "
            f"{_flag(smaller)}"
        )


def _check_model(args: argparse.Namespace) -> None:
    """`--model` must name a model of `--encoder` (checked here, so `config --check` sees it)."""
    try:
        parse_model_name(args.encoder, args.model)
    except UnknownEncoderError as exc:
        raise ConfigError(f"{_named(args, 'model', repr(args.model))}: {exc}") from exc


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _named(args: argparse.Namespace, dest: str, shown: str) -> str:
    """`--flag VALUE` as typed, and the configuration file's key when the file set it."""
    loaded: config_file.FileOptions | None = getattr(args, "config_loaded", None)
    origin = loaded.origins.get(dest) if loaded else None
    given = f"{_flag(dest)} {shown}".rstrip()
    if origin is not None and getattr(args, dest) == loaded.values.get(dest):
        return f"{given} (file key {origin})"
    return given


def _add_alert_arguments(run: argparse.ArgumentParser) -> None:
    alerts = run.add_argument_group("alerts (text queries: need a CLIP encoder)")
    alerts.add_argument(
        "--alert", action="append", default=[], metavar="[STREAM=]QUERY",
        help="fire an alert when analysed frames look like QUERY, e.g. 'a person at the door' "
        "(repeatable). 'door=a person' watches only the stream named door: the part before the "
        "first '=' is a stream name only when it names one of this run's streams, otherwise the "
        "whole value is the query. Alerts go to --jsonl, the overlay and --webhook",
    )  # fmt: skip
    alerts.add_argument(
        "--alert-threshold", type=float_in(-1, 1, "a cosine similarity"),
        default=DEFAULT_ALERT_THRESHOLD, metavar="COSINE",
        help="cosine similarity of frame and query, -1..1, that counts as a match (default "
        f"{DEFAULT_ALERT_THRESHOLD}: with CLIP ViT-B/32 a query that describes the frame scores "
        "about 0.27-0.33, an unrelated one 0.12-0.22; other models need their own value)",
    )  # fmt: skip
    alerts.add_argument(
        "--alert-frames", type=int_at_least(1), default=2, metavar="N",
        help="consecutive matching analysed frames that fire an alert, ≥ 1 (default 2)",
    )  # fmt: skip
    alerts.add_argument(
        "--alert-cooldown", type=float_at_least(0, SECONDS), default=30.0, metavar="SECONDS",
        help="seconds of stream time a query stays quiet after it fired, ≥ 0 (default 30)",
    )  # fmt: skip
    alerts.add_argument(
        "--webhook", metavar="URL",
        help="POST every alert as JSON with a JPEG snapshot to this http(s) URL; retried with "
        "backoff, never holds up the video",
    )  # fmt: skip


def _alert_rules(args: argparse.Namespace, inputs: tuple[str, ...]) -> tuple[AlertRule, ...]:
    """The `--alert` rules (the flags that tune them are checked when parsed)."""
    threshold, frames, cooldown = args.alert_threshold, args.alert_frames, args.alert_cooldown
    names = _stream_names(inputs)
    rules = []
    for value in args.alert:
        stream, named, rest = value.partition("=")
        if named and stream.strip() in names:
            streams, query = (stream.strip(),), rest
        else:
            streams, query = (), value
        if not query.strip():
            raise ConfigError(
                f"--alert {value!r} has no query text; e.g. --alert 'a person at the door' or, "
                "for one stream, --alert 'door=a person at the door'"
            )
        rules.append(AlertRule(query.strip(), streams, threshold, frames, cooldown))
    return tuple(rules)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _stream_names(inputs: tuple[str, ...]) -> set[str]:
    """The names the run will give its streams (as `open_source` and the pipeline name them:
    NAME=SPEC, else the camera, URL or file name; repeats get -2, -3, ...), so `--alert`
    can tell a stream name from a query that contains '='."""
    names: list[str] = []
    for given in inputs:
        name, spec = split_stream_name(given)
        if name is None and (spec.isdigit() or spec.startswith("/dev/")):
            name = camera_stream_name(int(spec) if spec.isdigit() else spec)
        elif name is None:
            name = url_stream_name(spec) if _URL.match(spec) else Path(spec).stem
        names.append(name)
    seen: dict[str, int] = {}
    unique = set()
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.add(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def _add_serve_arguments(run: argparse.ArgumentParser) -> None:
    web = run.add_argument_group("web viewer")
    web.add_argument(
        "--serve", metavar="[HOST:]PORT", type=serve_address(ServeConfig().host),
        help="serve a page with every stream's live video, captions and status, plus /metrics "
        "(Prometheus), /healthz and JSON at /api/status; HOST defaults to 127.0.0.1 (this "
        "machine only): 0.0.0.0:8080 opens it to the network",
    )  # fmt: skip
    web.add_argument(
        "--serve-token", metavar="TOKEN",
        help="require this token on every route of --serve: open the page as /?token=TOKEN, "
        "tools send 'Authorization: Bearer TOKEN' (a config file keeps it off the command line)",
    )  # fmt: skip


def _serve_config(serve: str | None, token: str | None) -> ServeConfig | None:
    """`--serve [HOST:]PORT` and `--serve-token` → the viewer's configuration, or None."""
    if serve is None:
        if token is not None:
            raise ConfigError("--serve-token needs --serve [HOST:]PORT")
        return None
    try:
        host, port = split_serve_address(serve, ServeConfig().host)
    except ValueError as exc:  # checked when parsed; here for a Namespace built by hand
        raise ConfigError(f"--serve must be [HOST:]PORT, got {serve!r}") from exc
    if token is not None and not token.strip():
        raise ConfigError("--serve-token must not be empty; leave it out for no token")
    return ServeConfig(host=host, port=port, token=token)


def _sources_file(path: str | None) -> tuple[str, ...]:
    """Inputs listed in a file, one per line (`NAME=SPEC` or `SPEC`; `#` comments)."""
    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.split(" #", 1)[0].strip() for line in fh]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--sources: cannot read {path!r}: {exc}") from exc
    specs = tuple(line for line in lines if line and not line.startswith("#"))
    if not specs:
        raise ConfigError(f"--sources: no inputs in {path!r}; write one per line")
    return specs


def _llm_config(args: argparse.Namespace) -> LlmConfig:
    prompts = {}
    for field, value in (("prompt", args.prompt), ("system_prompt", args.system_prompt)):
        if value is not None:
            prompts[field] = _text_or_file(value, f"--{field.replace('_', '-')}")
    return LlmConfig(url=args.llm_url, model=args.llm_model, api_key=args.llm_api_key, **prompts)


def _text_or_file(value: str, flag: str) -> str:
    if not os.path.isfile(value):
        return value
    try:
        with open(value, encoding="utf-8") as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag}: cannot read {value!r}: {exc}") from exc


def run_command(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        return _fail(exc, EXIT_USAGE)
    progress = not args.no_progress
    signals: list[int] = []
    try:
        summary = run_with_signals(
            lambda stop: run_pipeline(config, stop=stop, progress=progress), signals
        )
    except (UnknownEncoderError, ConfigError) as exc:
        return _fail(exc, EXIT_USAGE)
    except (SourceError, EncoderError, SinkError, OSError) as exc:
        return _fail(exc, EXIT_ERROR)
    except asyncio.CancelledError:
        print("streamer: aborted; outputs closed with what was written", file=sys.stderr)
        return _interrupted(signals)
    _print_summary(summary, config)
    if summary.interrupted:
        return _interrupted(signals)
    if any(s.state == "failed" for s in summary.streams):
        return EXIT_ERROR
    return EXIT_INCOMPLETE if summary.incomplete else EXIT_OK


def _interrupted(signals: list[int]) -> int:
    """130 for Ctrl-C (or a stop from inside, e.g. the window's quit key), 128 + N for signal N
    (143 for SIGTERM), as shells report a process a signal ended."""
    return 128 + signals[0] if signals else EXIT_INTERRUPTED


def _fail(exc: BaseException, code: int) -> int:
    print(f"streamer: error: {exc}", file=sys.stderr)
    return code


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
            p50, p95, p99 = s.latency_ms
            print(
                f"streamer:   {s.name}: {s.frames} frames, {s.analysed} analysed, {s.dropped} "
                f"dropped, {s.reconnects} reconnects, {s.damaged} damaged, latency p50/p95/p99 "
                f"{p50:.0f}/{p95:.0f}/{p99:.0f} ms, {s.state}",
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
