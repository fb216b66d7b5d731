"""`--hwaccel`: CUDA where this FFmpeg build and the machine have it, a clear error or a
fallback where not. CI machines have no GPU: there the error and fallback paths run for real;
the GPU decode itself runs where a CUDA device opens."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import numpy as np
import pytest

from streamer.core.channel import Channel
from streamer.errors import ConfigError
from streamer.sources import open_source
from streamer.sources.hwaccel import cuda_problem, resolve_hwaccel
from streamer.sources.options import DecodePlan

CUDA_PROBLEM = cuda_problem()
needs_no_cuda = pytest.mark.skipif(CUDA_PROBLEM is None, reason="a CUDA device opens here")


def test_none_decodes_on_the_cpu_without_a_word(caplog):
    caplog.set_level(logging.INFO, logger="streamer.sources")
    assert resolve_hwaccel("none") is None
    assert not caplog.records


@needs_no_cuda
def test_cuda_without_cuda_fails_naming_the_reason_and_the_fix():
    with pytest.raises(ConfigError) as raised:
        resolve_hwaccel("cuda")
    message = str(raised.value)
    assert message.startswith("--hwaccel cuda: ")
    assert CUDA_PROBLEM in message
    assert "Fix:" in message and "--hwaccel auto" in message


@needs_no_cuda
def test_auto_without_cuda_falls_back_to_the_cpu_with_one_info_line(caplog):
    caplog.set_level(logging.INFO, logger="streamer.sources")
    assert resolve_hwaccel("auto") is None
    lines = [r.getMessage() for r in caplog.records if r.name == "streamer.sources"]
    assert lines == [f"--hwaccel auto: decoding on the CPU ({CUDA_PROBLEM})"]
    assert all(r.levelno == logging.INFO for r in caplog.records)


@needs_no_cuda
@pytest.mark.integration
def test_cli_cuda_without_cuda_stops_before_any_output(tmp_path, small_clip):
    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run", str(small_clip), "--jsonl", str(out),
         "--hwaccel", "cuda", "--encoder", "default", "--weights", "random", "--no-llm",
         "--no-progress"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--hwaccel cuda: " in done.stderr and "Fix:" in done.stderr
    assert not out.exists()


def test_an_unknown_choice_is_refused():
    with pytest.raises(ConfigError, match="--hwaccel must be none, cuda or auto, got 'vaapi'"):
        resolve_hwaccel("vaapi")


@pytest.mark.gpu
@pytest.mark.skipif(CUDA_PROBLEM is not None, reason=f"needs CUDA decoding: {CUDA_PROBLEM}")
async def test_cuda_decodes_every_frame_like_the_cpu(sample_clip):
    """On a GPU machine: NVDEC's frames (NV12 on the host) convert to the CPU decode's RGB."""
    assert resolve_hwaccel("cuda") == "cuda"

    async def decode(hwaccel: str | None) -> list[np.ndarray]:
        source = open_source(sample_clip)
        channel = Channel(4)
        images = []
        async with asyncio.TaskGroup() as tg:
            tg.create_task(source.run(channel, asyncio.Event(), DecodePlan(hwaccel=hwaccel)))
            async for frame in channel:
                images.append(frame.image)
        return images

    gpu, cpu = await decode("cuda"), await decode(None)
    assert len(gpu) == len(cpu) == 132
    for a, b in zip(gpu[::30], cpu[::30], strict=True):
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 2.0
