"""`streamer run`: flags → RunConfig → the file pipeline → summary and exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from encoders import EncoderError, UnknownEncoderError
from streamer.batcher import BatchPolicy
from streamer.captioner import CaptionPolicy
from streamer.cli import (
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    run_with_signals,
)
from streamer.config import AnalysisConfig, OutputConfig, RunConfig
from streamer.encoder_worker import EncoderChoice
from streamer.errors import ConfigError, SourceError
from streamer.labels import DEFAULT_PROMPT, load_labels
from streamer.llm import DEFAULT_URL, LlmConfig
from streamer.pipeline import RunSummary, run_pipeline
from streamer.samples import cache_dir
from streamer.sinks import SinkError
from streamer.sources import SourceOptions

log = logging.getLogger("streamer")


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
    out = run.add_argument_group(
        "outputs (at least one; with several inputs put {stream} in the names)"
    )
    out.add_argument("-o", "--output", help="annotated video (MP4, H.264; audio copied)")
    out.add_argument("--srt", help="SubRip subtitles, one cue per caption")
    out.add_argument("--vtt", help="WebVTT subtitles, one cue per caption")
    out.add_argument("--jsonl", help="JSON Lines: a record per analysed frame and per caption")
    out.add_argument("--preset", default="veryfast", help="x264 preset (default: veryfast)")
    out.add_argument("--crf", type=int, default=20, help="x264 quality, 0..51 (default: 20)")
    out.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    enc = run.add_argument_group("encoder")
    enc.add_argument("--encoder", default="clip", help="clip | dinov2 | default (default: clip)")
    enc.add_argument(
        "--model", help="model of the encoder, e.g. ViT-B/32, ViT-B-32:laion2b_s34b_b79k, small"
    )
    enc.add_argument(
        "--weights",
        default="pretrained",
        help="pretrained | random | auto (pretrained if available, else random, labelled) | PATH",
    )
    enc.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available)")
    enc.add_argument("--precision", default="auto", help="auto | fp32 | fp16 | bf16")
    ana = run.add_argument_group("analysis")
    ana.add_argument("--analyze-fps", default="2", help="analysed frames per second, or 'all'")
    ana.add_argument("--max-batch", type=int, default=8, help="frames per encoder batch")
    ana.add_argument("--max-wait-ms", type=float, default=50.0, help="batch deadline (ms)")
    ana.add_argument("--labels", help="label file (one per line) or 'dog, cat, person'")
    ana.add_argument(
        "--label-prompt", default=DEFAULT_PROMPT, help="text template per label ({label})"
    )
    ana.add_argument("--top-k", type=int, default=3, help="tags per analysed frame")
    cap = run.add_argument_group("captions")
    cap.add_argument(
        "--caption-interval", type=float, default=2.0, help="min seconds between captions"
    )
    cap.add_argument(
        "--caption-max-age", type=float, default=10.0, help="refresh after this many s"
    )
    cap.add_argument(
        "--scene-threshold", type=float, default=0.15, help="cosine distance = new scene"
    )
    llm = run.add_argument_group("LLM captions (LM Studio or any OpenAI-compatible server)")
    llm.add_argument(
        "--llm-url", default=DEFAULT_URL, help=f"server base URL (default {DEFAULT_URL})"
    )
    llm.add_argument("--llm-model", help="model to ask (default: the one the server has loaded)")
    llm.add_argument("--llm-api-key", help="API key, if the server wants one")
    llm.add_argument("--no-llm", action="store_true", help="captions from tags only")
    llm.add_argument("--llm-max-in-flight", type=int, default=1, help="requests per live stream")
    llm.add_argument(
        "--caption-wait", type=float, default=10.0,
        help="seconds a file's output waits for its pending caption (default 10)",
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
        "--status-every", type=float, default=5.0, help="seconds between status tables"
    )
    net = run.add_argument_group("live sources")
    net.add_argument("--rtsp-transport", default="tcp", help="tcp | udp (default: tcp)")
    net.add_argument("--open-timeout", type=float, default=5.0, help="seconds to open a source")
    net.add_argument(
        "--read-timeout", type=float, default=5.0, help="seconds without a frame = stalled, reopen"
    )
    net.add_argument(
        "--reconnect-initial", type=float, default=0.5, help="first reconnect delay (s)"
    )
    net.add_argument(
        "--reconnect-max", type=float, default=10.0, help="longest reconnect delay (s)"
    )
    net.add_argument(
        "--reconnect-attempts", type=int, default=None,
        help="give a source up after this many failed attempts in a row (default: never)",
    )  # fmt: skip
    run.add_argument("--queue-frames", type=int, default=32, help="frames buffered in flight")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--no-cache", action="store_true", help="do not cache label text embeddings on disk"
    )
    run.set_defaults(handler=run_command)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Build and validate the run configuration; raises ConfigError naming the flag."""
    try:
        fps = None if args.analyze_fps.strip().lower() == "all" else float(args.analyze_fps)
    except ValueError as exc:
        raise ConfigError(
            f"--analyze-fps must be a number > 0 or 'all', got {args.analyze_fps!r}"
        ) from exc
    try:
        batch = BatchPolicy(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
        captions = CaptionPolicy(
            min_interval=args.caption_interval,
            max_age=args.caption_max_age,
            scene_threshold=args.scene_threshold,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return RunConfig(
        input=tuple(args.inputs) + _sources_file(args.sources),
        outputs=OutputConfig(
            video=args.output,
            srt=args.srt,
            vtt=args.vtt,
            jsonl=args.jsonl,
            preset=args.preset,
            crf=args.crf,
            copy_audio=not args.no_audio,
        ),
        encoder=EncoderChoice(
            kind=args.encoder,
            model=args.model,
            weights=args.weights,
            device=args.device,
            precision=args.precision,
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
        ),
        status_every=args.status_every,
    )


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
    if len(summary.streams) > 1 or any(s.reconnects or s.dropped for s in summary.streams):
        for s in summary.streams:
            p50, p95, p99 = s.latency_ms
            print(
                f"streamer:   {s.name}: {s.frames} frames, {s.analysed} analysed, {s.dropped} "
                f"dropped, {s.reconnects} reconnects, latency p50/p95/p99 "
                f"{p50:.0f}/{p95:.0f}/{p99:.0f} ms, {s.state}",
                file=sys.stderr,
            )
    if summary.random_weights:
        print("streamer: note: the encoder used RANDOM weights; tags are meaningless",
              file=sys.stderr)  # fmt: skip
    if summary.incomplete:
        print(f"streamer: input incomplete: {summary.incomplete}", file=sys.stderr)
