"""`streamer bench`: the encoder table and the pipeline against its floors, on this machine."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer.cli.exits import EXIT_OK, report
from streamer.cli.flags import add_options
from streamer.core.samples import export_cache_dir
from streamer.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from streamer.bench.encoders import EncoderRow
    from streamer.bench.pipeline import PipelineBench


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("bench", help="measure encoders and the pipeline on this machine")
    sub = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    enc = sub.add_parser(
        "encoders",
        help="latency, throughput, memory and size of each encoder (random weights)",
        description="Print the encoder table (markdown) for this machine. Random weights: "
        "speed and memory do not depend on them, and nothing is downloaded.",
    )
    enc.add_argument(
        "--encoders", metavar="LIST",
        help="comma-separated kind:model, e.g. clip:ViT-B/32,dinov2:small,default (default: "
        "the smaller ones on a CPU, all on a GPU)",
    )  # fmt: skip
    enc.add_argument("--all", action="store_true", help="every registered encoder, also on CPU")
    enc.add_argument(
        "--batches", metavar="LIST", help="batch sizes (default: 1,4,16 on CPU, 1,4,16,64,256 "
        "on CUDA)",
    )  # fmt: skip
    enc.add_argument("--seconds", type=float, default=2.0, help="time per batch size (default 2)")
    enc.add_argument(
        "--frames", metavar="WxH",
        help="feed uint8 frames of this size from the host (upload and preprocessing "
        "included) instead of model input on the device",
    )  # fmt: skip
    enc.add_argument(
        "--threads", type=int,
        help="CPU threads for torch (default: torch's, one per core); 1 is steadier on a busy "
        "machine",
    )  # fmt: skip
    add_options(enc, ["device", "precision", "cuda-graphs", "compile", "backend", "int8",
                      "calibrate"], defaults=True)  # fmt: skip
    enc.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    enc.set_defaults(handler=_encoders)

    pipe = sub.add_parser(
        "pipeline",
        help="file and live fps and latency against the decode floor and a naive loop",
        description="Run the decode floor, floor+draw, a naive one-thread loop (torch, fp32) "
        "and the pipeline on the same clip, each in its own process, for files and paced like "
        "a camera, and print the ratios (markdown). The pipeline loads its encoder as "
        "`streamer run` does: --backend, --int8, --precision, the export cache.",
    )
    pipe.add_argument("--clip", help="input video (default: the sample clip, fetched once)")
    pipe.add_argument(
        "--seconds", type=float, default=20.0,
        help="shortest benchmark clip: the input is repeated whole (default 20)",
    )  # fmt: skip
    pipe.add_argument("--model", default="ViT-B/32", help="CLIP model (random weights)")
    add_options(pipe, ["device", "precision", "backend", "int8", "calibrate"], defaults=True)
    pipe.add_argument("--preset", default="veryfast", help="x264 preset (default: veryfast)")
    pipe.add_argument(
        "--analyze-fps", type=float, default=2.0, help="default analysis rate (default 2)"
    )
    pipe.add_argument(
        "--skip-every-frame", action="store_true", help="no file rows with every frame analysed"
    )
    pipe.add_argument("--no-live", action="store_true", help="no live (paced) rows")
    pipe.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    pipe.set_defaults(handler=_pipeline)


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} must be positive integers separated by commas, got {text!r}")
    return values


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or "0" in (width, height):
        raise ConfigError(f"--frames must be WIDTHxHEIGHT, e.g. 1280x720, got {text!r}")
    return int(width), int(height)


def _encoders(args: argparse.Namespace) -> int:
    from encoders.acceleration import Acceleration
    from streamer.bench.encoders import default_batches, default_encoders, markdown_table
    from streamer.cli.build import calibrate_needs_int8

    try:
        device = _device(args.device)
        batches = _ints(args.batches, "--batches") if args.batches else default_batches(device)
        frames = _size(args.frames) if args.frames else None
        if not args.seconds > 0:
            raise ConfigError(f"--seconds must be > 0, got {args.seconds}")
        if args.threads is not None and args.threads < 1:
            raise ConfigError(f"--threads must be ≥ 1, got {args.threads}")
        _check_json(args.json)
        calibrate_needs_int8(args.int8, args.calibrate)  # else fp32 rows, silently
    except Exception as exc:
        return report(exc)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    specs = (
        [s.strip() for s in args.encoders.split(",") if s.strip()]
        if args.encoders
        else list(default_encoders(device, args.all))
    )
    acceleration = Acceleration(cuda_graphs=args.cuda_graphs, compile=args.compile)
    rows = []
    for spec in specs:
        print(f"streamer: measuring {spec} on {device} ...", file=sys.stderr)
        try:
            backend, calibration = _backend(spec, device, args)
            rows.append(_measure(spec, device=device, precision=args.precision,
                                 batches=batches, seconds=args.seconds,
                                 acceleration=acceleration, frame_size=frames,
                                 backend=backend, calibration=calibration,
                                 export_cache=str(export_cache_dir())))  # fmt: skip
        except Exception as exc:
            return report(exc)
    print(markdown_table(rows))
    return _write_json(args.json, [row.to_json() for row in rows])


def _pipeline(args: argparse.Namespace) -> int:
    from streamer.bench.pipeline import run_pipeline_bench

    try:
        bench = _pipeline_bench(args)
    except Exception as exc:  # a bad option (exit 2), or the sample clip not to be had (1)
        return report(exc)
    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as tmp:
        try:
            result = run_pipeline_bench(
                bench, Path(tmp),
                progress=lambda name: print(f"streamer: running {name} ...", file=sys.stderr),
            )  # fmt: skip
        except Exception as exc:
            return report(exc)
    print(result.markdown())
    return _write_json(args.json, result.to_json())


def _pipeline_bench(args: argparse.Namespace) -> PipelineBench:
    """What `bench pipeline` runs: the pipeline's encoder chosen as `streamer run` chooses it
    (the export cache, `--int8` calibrated on the clip unless `--calibrate` names a video)."""
    from streamer.bench.file import PipelineEncoder
    from streamer.bench.pipeline import PipelineBench
    from streamer.cli.build import calibrate_needs_int8
    from streamer.core.samples import sample_clip
    from streamer.sources.file import probe_video

    _check_pipeline_flags(args)
    clip = Path(args.clip) if args.clip else sample_clip()
    if not clip.is_file():
        raise ConfigError(f"--clip {str(clip)!r} is not a file")
    probe_video(clip)  # not a readable video: the message `streamer run` gives, and its fix
    calibrate_needs_int8(args.int8, args.calibrate)
    calibrate = str(clip.resolve()) if args.int8 and args.calibrate is None else args.calibrate
    encoder = PipelineEncoder(
        backend=args.backend, precision=args.precision, int8=args.int8, calibrate=calibrate,
        export_cache=str(export_cache_dir()),
    )  # fmt: skip
    bench = PipelineBench(
        clip=clip,
        seconds=args.seconds,
        model=args.model,
        device=args.device,
        encoder=encoder,
        preset=args.preset,
        analyze_fps=args.analyze_fps,
        every_frame=not args.skip_every_frame,
        live=not args.no_live,
    )
    if args.device is not None:  # after the combination checks, which name their fix
        _device(args.device)  # a device this machine lacks
    return bench


def _check_pipeline_flags(args: argparse.Namespace) -> None:
    """What the modes' child processes would refuse only after the set-up (a traceback and
    seconds to minutes later), refused here before any mode runs."""
    from encoders.registry import parse_model_name
    from streamer.outputs.options import X264_PRESETS

    _check_json(args.json)
    if args.preset not in X264_PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join(X264_PRESETS)}, got {args.preset!r}")
    parse_model_name("clip", args.model)  # an unknown model: the registry's own words


def _backend(spec: str, device: torch.device, args: argparse.Namespace) -> tuple[str, str | None]:
    """The backend that runs `spec` (`--backend` with "auto" decided), checked as `run` checks
    it (a combination it cannot run is a ConfigError naming the fix), and with --int8 the
    video it calibrates on."""
    from encoders.registry import parse_model_name
    from streamer.analysis.worker import EncoderChoice, calibration_video
    from streamer.bench.encoders import parse_encoder_spec

    kind, model = parse_encoder_spec(spec)
    parse_model_name(kind, model)  # an unknown kind or model: the registry's own words
    choice = EncoderChoice(kind=kind, model=model, device=str(device), precision=args.precision,
                           compile=args.compile, backend=args.backend, int8=args.int8,
                           calibrate=args.calibrate,
                           export_cache=str(export_cache_dir()))  # fmt: skip
    return choice.runs_on, calibration_video(choice) if args.int8 else None


def _check_json(path: str | None) -> None:
    """Refuse a `--json` file that cannot be written before the minutes of measuring."""
    from streamer.outputs.options import check_writable

    if path:
        check_writable(str(Path(path).expanduser()))


def _write_json(path: str | None, data: object) -> int:
    """Write `data` to `--json` (when given); the exit code, the table being printed already."""
    if path:
        try:
            Path(path).expanduser().write_text(json.dumps(data, indent=2, default=str) + "\n")
        except OSError as exc:
            return report(exc, context=f"--json {path}: ")
    return EXIT_OK


def _device(name: str | None) -> torch.device:
    """`--device`, or the default; a device torch does not know, or this machine does not
    have, is bad usage of the bench (exit 2), named in `resolve_device`'s words."""
    from encoders.base import resolve_device
    from encoders.errors import UnsupportedBackendError

    try:
        return resolve_device(name)
    except UnsupportedBackendError as exc:
        raise ConfigError(str(exc)) from exc


def _measure(spec: str, **options: Any) -> EncoderRow:
    """One encoder's row; `encoders`' plain checks of a value (the precision) are bad usage."""
    import encoders
    from streamer.bench.encoders import bench_encoder

    try:
        return bench_encoder(spec, **options)
    except ValueError as exc:
        if isinstance(exc, encoders.EncoderError):
            raise  # its twin in the tree states the exit code
        raise ConfigError(str(exc)) from exc
