"""`streamer llm-check` against the double: what it prints, its exit codes, its fixes.

The command runs `asyncio.run` itself, so it runs in a worker thread while the double serves
on the test's loop.
"""

from __future__ import annotations

import argparse
import asyncio

import pytest

from bench.harness.lmstudio import LmStudioDouble
from streamer.cli import llm as _cli_llm


async def check(*argv: str) -> int:
    return await asyncio.to_thread(_cli_llm.main, list(argv))


async def test_it_prints_the_probe_and_times_an_image_caption(double, capsys):
    assert await check("--url", double.url) == 0
    out = capsys.readouterr().out
    assert f"server   {double.url} (lmstudio)" in out
    assert "qwen2-vl-2b-instruct  (loaded, vision, context 4096)" in out
    assert "llama-3.2-1b-instruct  (not loaded, text-only, context 32768)" in out  # its maximum
    assert "text-embedding-nomic-embed-text-v1.5  (not loaded, embeddings" in out
    assert "model    qwen2-vl-2b-instruct" in out
    assert "vision   yes [lmstudio /api/v1/models]" in out
    assert "context  4096 tokens" in out
    assert "'Caption 1 by qwen2-vl-2b-instruct, with an image.'" in out
    assert "s round trip (image + tags)" in out


async def test_a_model_that_is_not_loaded_is_named_and_loaded_by_the_check(double, capsys):
    assert await check("--url", double.url, "--model", "llama-3.2-1b-instruct") == 0
    out = capsys.readouterr().out
    assert "loaded   no (the first caption loads it)" in out
    assert "round trip (tags only)" in out


async def test_nothing_loaded_exits_1_with_the_fix(double, capsys):
    double.no_models_loaded = True
    assert await check("--url", double.url) == 1
    captured = capsys.readouterr()
    assert "model    (none)" in captured.out
    assert "lms load MODEL" in captured.err


async def test_the_api_key_is_sent_and_a_refusal_says_so(double, capsys):
    double.require_auth = "sk-lm-1"
    assert await check("--url", double.url) == 1
    assert "API token" in capsys.readouterr().err
    assert await check("--url", double.url, "--api-key", "sk-lm-1") == 0


async def test_a_server_that_fails_the_caption_exits_1(double, capsys):
    double.faults.append("500")
    assert await check("--url", double.url) == 1
    assert "answered HTTP 500: boom" in capsys.readouterr().err
    assert double.counts["POST /v1/chat/completions"] == 1  # a check does not retry


async def test_an_unreachable_server_names_lm_studio_and_url(capsys):
    server = LmStudioDouble()
    await server.start()
    await server.stop()
    assert await check("--url", server.url) == 1
    err = capsys.readouterr().err
    assert "is LM Studio running? start its server: `lms server start`" in err
    assert "pass --url" in err


def test_a_bad_url_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        _cli_llm.main(["--url", "localhost:1234"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --url: must be an http:// or https:// URL with a host" in err
    assert "'localhost:1234'" in err


def test_it_registers_on_the_streamer_subcommands():
    parser = argparse.ArgumentParser(prog="streamer")
    _cli_llm.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["llm-check", "--url", "http://h:1/v1", "--model", "m"])
    assert (args.url, args.model, args.handler) == ("http://h:1/v1", "m", _cli_llm.check)
