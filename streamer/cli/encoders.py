"""`streamer encoders`: the registered encoders, the selection matrix, one encoder's details,
and exports for a backend made ahead of the first run."""

from __future__ import annotations

import argparse
import dataclasses
import time

from streamer.cli.exits import EXIT_OK, report
from streamer.cli.flags import add_options
from streamer.core.samples import export_cache_dir
from streamer.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("encoders", help="list encoders, the selection matrix, details")
    sub = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    sub.add_parser("list", help="every registered encoder and model").set_defaults(handler=_list)
    sub.add_parser("matrix", help="which encoder for which use case").set_defaults(handler=_matrix)
    info = sub.add_parser("info", help="load one encoder and print what it reports")
    info.add_argument("--encoder", default="clip")
    info.add_argument("--model")
    info.add_argument("--weights", default="pretrained")
    info.add_argument("--device")
    add_options(info, ["backend", "int8", "calibrate"], defaults=True)
    info.set_defaults(handler=_info)
    export = sub.add_parser(
        "export",
        help="convert an encoder for a backend now, into the cache later runs load it from",
        description="Export the image encoder for --backend (openvino, onnxruntime) once, "
        "into streamer's cache, so the first run does not wait for the conversion; with "
        "--int8 also quantise it, calibrated on --calibrate PATH (default: the sample clip; "
        "a run finds this export when it calibrates on the same video).",
    )
    add_options(export, ["encoder", "model", "weights", "backend", "int8", "calibrate"],
                defaults=True)  # fmt: skip
    export.set_defaults(handler=_export)
    cache = sub.add_parser(
        "cache",
        help="what the export cache holds; --prune removes what this installation no longer opens",
        description="List the exports in streamer's cache (each backend's converted models), "
        "with their size, when a run last opened one, and whether this installation opens it. "
        "An upgrade of streamer, of a backend or of torch makes new exports and leaves the old "
        "ones: --prune removes those, with unfinished builds and files of exports that are "
        "gone. An export this version has not opened yet counts as old (one run opens it).",
    )
    what = cache.add_mutually_exclusive_group()
    what.add_argument("--prune", action="store_true",
                      help="remove what this installation no longer opens")  # fmt: skip
    what.add_argument("--all", action="store_true", dest="everything",
                      help="remove every export (later runs export again)")  # fmt: skip
    cache.set_defaults(handler=_cache)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _list(args: argparse.Namespace) -> int:
    import encoders
    from encoders.backends import BACKENDS

    reasons: dict[str, str] = {}  # why a backend cannot run a family, footnoted by number
    rows = [["kind", "model", "dim", "tokens", "input", "text tags", *BACKENDS, "weights"]]
    for spec in encoders.list_encoders():
        pre = spec.preprocess
        size = f"{pre.size}px" + (f" (from {pre.resize_size})" if pre.resize_size else "")
        runs = [_runs(backend, spec.kind, reasons) for backend in BACKENDS]
        rows.append([spec.kind, spec.model, str(spec.dim), f"{spec.tokens}x{spec.token_dim}",
                     size, "yes" if spec.has_text else "no", *runs, spec.weights])  # fmt: skip
    print(_table(rows))
    print("\nBackends: torch on any device and precision; openvino and onnxruntime on the CPU, "
          "in fp32 or int8 (--int8).")  # fmt: skip
    for reason, number in reasons.items():
        print(f"[{number}] {reason}")
    return EXIT_OK


def _runs(backend: str, kind: str, reasons: dict[str, str]) -> str:
    """ "yes", or "no [N]" with the reason kept as footnote N."""
    from encoders.backends import unsupported_reason

    reason = unsupported_reason(backend, kind, device=None if backend == "torch" else "cpu")
    if reason is None:
        return "yes"
    number = reasons.setdefault(reason, str(len(reasons) + 1))
    return f"no [{number}]"


def _matrix(args: argparse.Namespace) -> int:
    import encoders

    rows = [["use case", "encoder", "model", "why"]]
    rows += [[u.name, u.kind, u.model, u.why] for u in encoders.encoder_matrix()]
    print(_table(rows))
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from streamer.analysis.worker import EncoderChoice, load_encoder

    try:
        encoder = load_encoder(EncoderChoice(
            kind=args.encoder, model=args.model, weights=args.weights, device=args.device,
            backend=args.backend, int8=args.int8, calibrate=args.calibrate,
            export_cache=str(export_cache_dir()),
        ))  # fmt: skip
    except Exception as exc:
        return report(exc)
    for field in dataclasses.fields(encoder.info):
        print(f"{field.name:>15}: {_cell(getattr(encoder.info, field.name))}")
    for field in dataclasses.fields(encoder.preprocess_cfg):
        print(f"{field.name:>15}: {_cell(getattr(encoder.preprocess_cfg, field.name))}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from encoders.backends import EXPORTED
    from encoders.backends.calibration import Calibration
    from encoders.backends.export_cache import ExportCache, keeps_exports
    from streamer.analysis.worker import EncoderChoice, calibration_video, load_encoder
    from streamer.cli.build import calibrate_needs_int8

    calibrate_needs_int8(args.int8, args.calibrate)
    cache = export_cache_dir()
    try:
        if not keeps_exports(cache):
            raise ConfigError(f"the export cache {cache} cannot be written: make it writable, "
                              "or point XDG_CACHE_HOME at a folder that can be")  # fmt: skip
        choice = EncoderChoice(kind=args.encoder, model=args.model, weights=args.weights,
                               device="cpu", backend=args.backend, int8=args.int8,
                               calibrate=args.calibrate, export_cache=str(cache))  # fmt: skip
        if choice.runs_on not in EXPORTED:
            raise ConfigError(
                f"--backend {args.backend}: the encoder runs on {choice.runs_on}, which runs "
                "the torch model as it is: there is nothing to export; use --backend openvino "
                "or onnxruntime"
            )
        encoder = load_encoder(choice)  # exports, or checks and loads what is cached
        variant = Calibration(calibration_video(choice)).variant if choice.int8 else "fp32"
    except Exception as exc:
        return report(exc)
    # the runtime's key where it has one: an encoder opened from the cache has no torch model
    # to digest
    key = getattr(encoder.runtime, "export_key", None) or _export_key(choice.runs_on)(
        encoder, variant
    )
    folder = ExportCache(choice.export_cache).folder(key)
    shown = f"int8, calibrated on {calibration_video(choice)}" if choice.int8 else "fp32"
    print(f"{encoder.kind} {encoder.info.model!r} on {choice.runs_on} ({shown}): {folder}")
    return EXIT_OK


def _cache(args: argparse.Namespace) -> int:
    from encoders.backends.cache_inventory import inventory, prune

    root = export_cache_dir()
    if args.prune or args.everything:
        removed = prune(root, everything=args.everything)
        for path, size in removed:
            print(f"removed {path} ({size / 1e6:.0f} MB)")
        total = sum(size for _, size in removed)
        print(f"{len(removed)} removed, {total / 1e6:.0f} MB freed; "
              f"{inventory(root).size / 1e6:.0f} MB left in {root}")  # fmt: skip
        return EXIT_OK
    found = inventory(root)
    print(f"export cache {root}: {found.size / 1e6:.0f} MB")
    if found.exports:
        rows = [["backend", "model", "variant", "MB", "last opened", "this installation"]]
        for export in sorted(found.exports, key=lambda e: -e.used):
            key = export.key
            model = f"{key.family} {key.model}" if key else f"? ({export.folder.name})"
            shown = "building" if export.building else "opens it" if export.current else "old"
            rows.append([export.backend, model, key.variant.split()[0] if key else "?",
                         f"{export.size / 1e6:.0f}", _ago(export.used), shown])  # fmt: skip
        print(_table(rows))
    stale = sum(e.size for e in found.stale) + sum(size for _, size in found.leftovers)
    if stale:
        print(f"\n{stale / 1e6:.0f} MB no longer opened by this installation (older versions' "
              "exports, unfinished builds, stray files): `streamer encoders cache --prune` "
              "removes them")  # fmt: skip
    return EXIT_OK


def _ago(when: float) -> str:
    """'just now', '12 min ago', '5 h ago', '3 d ago'."""
    elapsed = max(0.0, time.time() - when)
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if elapsed >= span:
            return f"{elapsed // span:.0f} {unit} ago"
    return "just now"


def _export_key(backend: str):  # the backend module's `export_key`
    from encoders.backends import onnxruntime_backend, openvino_backend

    return {"openvino": openvino_backend.export_key,
            "onnxruntime": onnxruntime_backend.export_key}[backend]  # fmt: skip


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.1f}M"
    return str(value)
