"""`streamer encoders`: the registered encoders, the selection matrix, one encoder's details,
and exports for a backend made ahead of the first run."""

from __future__ import annotations

import argparse
import dataclasses

from streamer.cli.exits import EXIT_OK, report
from streamer.cli.flags import add_options
from streamer.core.samples import cache_dir
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
    info.add_argument("--backend", default="torch", help="torch | openvino | auto")
    info.set_defaults(handler=_info)
    export = sub.add_parser(
        "export",
        help="convert an encoder for a backend now, into the cache later runs load it from",
        description="Export the image encoder for --backend (openvino) once, into streamer's "
        "cache, so the first run does not wait for the conversion.",
    )
    add_options(export, ["encoder", "model", "weights", "backend"], defaults=True)
    export.set_defaults(handler=_export)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _list(args: argparse.Namespace) -> int:
    import encoders
    from encoders.registry import family

    rows = [["kind", "model", "dim", "tokens", "input", "text tags", "backends", "weights"]]
    for spec in encoders.list_encoders():
        pre = spec.preprocess
        size = f"{pre.size}px" + (f" (from {pre.resize_size})" if pre.resize_size else "")
        rows.append([spec.kind, spec.model, str(spec.dim), f"{spec.tokens}x{spec.token_dim}",
                     size, "yes" if spec.has_text else "no",
                     ",".join(family(spec.kind).backends), spec.weights])  # fmt: skip
    print(_table(rows))
    return EXIT_OK


def _matrix(args: argparse.Namespace) -> int:
    import encoders

    rows = [["use case", "encoder", "model", "why"]]
    rows += [[u.name, u.kind, u.model, u.why] for u in encoders.encoder_matrix()]
    print(_table(rows))
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    import encoders

    try:
        encoder = encoders.create_encoder(
            args.encoder, args.model, weights=args.weights, device=args.device,
            backend=args.backend, export_cache=cache_dir() / "exports",
        )  # fmt: skip
    except Exception as exc:
        return report(exc)
    for field in dataclasses.fields(encoder.info):
        print(f"{field.name:>15}: {_cell(getattr(encoder.info, field.name))}")
    for field in dataclasses.fields(encoder.preprocess_cfg):
        print(f"{field.name:>15}: {_cell(getattr(encoder.preprocess_cfg, field.name))}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from encoders.backends.export_cache import ExportCache
    from streamer.analysis.worker import EncoderChoice, load_encoder

    try:
        choice = EncoderChoice(kind=args.encoder, model=args.model, weights=args.weights,
                               device="cpu", backend=args.backend,
                               export_cache=str(cache_dir() / "exports"))  # fmt: skip
        if choice.runs_on != "openvino":
            raise ConfigError(
                f"--backend {args.backend}: the encoder runs on {choice.runs_on}, which runs "
                "the torch model as it is: there is nothing to export; use --backend openvino"
            )
        encoder = load_encoder(choice)  # exports, or checks and loads what is cached
    except Exception as exc:
        return report(exc)
    # the runtime's key: an encoder opened from the cache has no torch model to digest
    folder = ExportCache(choice.export_cache).folder(encoder.runtime.export_key)
    print(f"{encoder.kind} {encoder.info.model!r} on {choice.runs_on}: {folder}")
    return EXIT_OK


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.1f}M"
    return str(value)
