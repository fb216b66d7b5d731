"""`streamer llm-check`: what the LLM server is, which model captions would use, one timed caption.

Exit 0 when a caption came back; 1 otherwise, with the reason and the fix; 2 for a bad option.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from streamer.cli.exits import EXIT_ERROR, EXIT_OK, report
from streamer.core.checks import http_url
from streamer.llm import (
    DEFAULT_RETRY,
    DEFAULT_URL,
    CaptionRequest,
    LlmClient,
    LlmConfig,
    LlmError,
    ModelInfo,
    ServerInfo,
)

_PROG = "streamer llm-check"
_URL_HINT = (
    "pass --url for another server (llama.cpp: http://localhost:8080/v1, "
    "Ollama: http://localhost:11434/v1, vLLM: http://localhost:8000/v1)"
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `llm-check` on the `streamer` command's subparsers."""
    parser = commands.add_parser(
        "llm-check",
        help="probe the LLM server (LM Studio or OpenAI-compatible) and time one caption",
        description="Probe the LLM server: its kind, models, the model captions would use, "
        "whether it takes images, its context length; then time one tiny caption request.",
    )
    parser.add_argument(
        "--url", default=DEFAULT_URL, type=http_url(), help=f"base URL (default: {DEFAULT_URL})"
    )
    parser.add_argument("--model", help="model to use (default: the loaded one)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LM_API_TOKEN"),
        help="API token, if the server requires one (default: $LM_API_TOKEN)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the caption, which may load the model (default: 120)",
    )
    parser.set_defaults(handler=check)


def check(args: argparse.Namespace) -> int:
    """Run the check for parsed `llm-check` arguments; returns the exit code."""
    try:
        config = LlmConfig(
            url=args.url,
            model=args.model,
            api_key=args.api_key or None,
            first_request_timeout=args.timeout,
            read_timeout=args.timeout,
            retry=replace(DEFAULT_RETRY, max_attempts=1),  # report the first failure as it is
        )
    except Exception as exc:
        return report(exc, _PROG)
    return asyncio.run(_check(config))


async def _check(config: LlmConfig) -> int:
    import aiohttp  # here, not at the CLI's start: every command builds this parser

    async with aiohttp.ClientSession() as session:
        client = LlmClient(config, session)
        try:
            info = await client.probe()
        except Exception as exc:
            return _failed(exc)
        _print_info(info)
        if info.model is None:
            print(f"{_PROG}: error: {info.problem}", file=sys.stderr)
            return EXIT_ERROR
        image = _test_card() if info.vision else None
        request = CaptionRequest("llm-check", 0.0, ("test card", "colour bars"), image)
        started = time.perf_counter()
        try:
            text = await client.caption(request)
        except Exception as exc:
            return _failed(exc)
        elapsed = time.perf_counter() - started
    sent = "image + tags" if image is not None else "tags only"
    print(f"{'caption':<9}{text!r}")
    print(f"{'time':<9}{elapsed:.2f} s round trip ({sent})")
    return EXIT_OK


def _failed(exc: Exception) -> int:
    code = report(exc, _PROG)
    if isinstance(exc, LlmError) and exc.kind in ("unreachable", "timeout", "wrong_url"):
        print(f"  hint: {_URL_HINT}", file=sys.stderr)
    return code


def _print_info(info: ServerInfo) -> None:
    print(f"{'server':<9}{info.url} ({info.kind})")
    for i, model in enumerate(info.models or ()):
        print(f"{'models' if i == 0 else '':<9}{model.id}{_model_notes(model)}")
    if not info.models:
        print(f"{'models':<9}(none listed)")
    print(f"{'model':<9}{info.model or '(none)'}")
    if info.model is None:
        return
    vision = {True: "yes", False: "no (captions from tags)", None: "unknown"}[info.vision]
    print(f"{'vision':<9}{vision} [{info.vision_source}]")
    context = f"{info.context_length} tokens" if info.context_length else "not reported"
    print(f"{'context':<9}{context}")
    loaded = {True: "yes", False: "no (the first caption loads it)", None: "not reported"}
    print(f"{'loaded':<9}{loaded[info.loaded]}")


def _model_notes(model: ModelInfo) -> str:
    notes = []
    if model.loaded is not None:
        notes.append("loaded" if model.loaded else "not loaded")
    if model.type and model.type.startswith("embedding"):
        notes.append("embeddings")
    elif model.vision is not None:
        notes.append("vision" if model.vision else "text-only")
    if model.context_length:
        notes.append(f"context {model.context_length}")
    return f"  ({', '.join(notes)})" if notes else ""


def _test_card() -> np.ndarray:
    """A 64x64 card of colour bars: enough for a vision model to say something."""
    bars = np.array(
        [[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0],
         [0, 0, 255], [0, 0, 0]], dtype=np.uint8
    )  # fmt: skip
    return np.repeat(np.repeat(bars[None, :, :], 64, axis=0), 8, axis=1)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m streamer.cli.llm [--url …]`: the check on its own, before it is wired in."""
    from streamer.cli._parser import Parser

    parser = Parser(prog="streamer")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["llm-check", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
