"""`streamer run --serve [HOST:]PORT --serve-token TOKEN`: the flags, and the command serving."""

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import av
import cv2
import numpy as np
import pytest

from streamer.cli.main import build_parser
from streamer.cli.run import config_from_args
from streamer.config import ServeConfig
from streamer.errors import ConfigError
from streamer.pipeline import run_pipeline
from streamer.watch.web._rtc_media import read_stamp

TINY = ["--model", "tiny", "--weights", "random", "--preset", "ultrafast"]


def _config(*flags: str):
    return config_from_args(build_parser().parse_args(["run", "clip.mp4", *flags]))


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [("8080", "127.0.0.1", 8080), ("0.0.0.0:9000", "0.0.0.0", 9000), ("[::1]:0", "::1", 0),
     ("localhost:8081", "localhost", 8081)],
)  # fmt: skip
def test_serve_takes_host_and_port_and_binds_loopback_by_default(value, host, port):
    assert _config("--serve", value).serve == ServeConfig(host=host, port=port)


@pytest.mark.parametrize("value", ["nope", "::1", ":8080", "host:99999", "host:", "[::1]", "8o"])
def test_a_bad_serve_address_is_refused_naming_the_flag(value, capsys):
    with pytest.raises(SystemExit) as caught:  # checked as the flag is parsed
        _config("--serve", value)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --serve: must be [HOST:]PORT with PORT in 0..65535" in err
    assert repr(value) in err


def test_the_token_goes_with_serve_and_only_with_it():
    assert _config("--serve", "8080", "--serve-token", "s3").serve.token == "s3"
    with pytest.raises(ConfigError, match="--serve-token needs --serve"):
        _config("--jsonl", "a.jsonl", "--serve-token", "s3")
    with pytest.raises(ConfigError, match="--serve-token must not be empty"):
        _config("--serve", "8080", "--serve-token", " ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.integration
async def test_the_command_serves_with_its_token_and_needs_no_file_output(long_clip):
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamer", "run", f"cam={long_clip}", "--live", "--no-llm",
        "--no-progress", "--serve", f"127.0.0.1:{port}", "--serve-token", "s3cret", *TINY,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    headers = {"Authorization": "Bearer s3cret"}
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(120):
                while True:  # the model loads first, then the viewer binds
                    assert proc.returncode is None, "the command ended before serving"
                    try:
                        async with session.get(url + "api/status") as response:
                            refused = response.status
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.2)
            async with session.get(url + "api/status", headers=headers) as response:
                status = await response.json()
            async with session.get(url + "healthz") as response:  # a health check's: no token
                health = response.status
    finally:
        proc.send_signal(signal.SIGTERM)
        stderr = await asyncio.wait_for(proc.stderr.read(), 60)
        await proc.wait()
    assert refused == 401 and health == 200
    assert status["streams"][0]["name"] == "cam" and status["streams"][0]["live"]
    assert proc.returncode == 143, stderr.decode()


def test_the_webrtc_stamp_is_a_viewer_switch_and_needs_the_viewer(tmp_path):
    assert _config("--serve", "8080", "--webrtc-stamp").serve.webrtc_stamp
    assert not _config("--serve", "8080").serve.webrtc_stamp
    with pytest.raises(ConfigError, match="--webrtc-stamp needs --serve"):
        _config("--jsonl", "a.jsonl", "--webrtc-stamp")
    toml = tmp_path / "s.toml"
    toml.write_text('serve = "8080"\n[web-viewer]\nwebrtc-stamp = true\n')
    parsed = build_parser().parse_args(["run", "clip.mp4", "--config", str(toml)])
    assert config_from_args(parsed).serve.webrtc_stamp


@pytest.mark.integration
async def test_the_stamp_is_on_the_viewers_frames_and_never_in_the_files(
    tmp_path, long_clip, tiny_encoder
):
    """`--webrtc-stamp`: what the viewer serves carries the clock the page reads back; the
    MP4 the run writes at the same time does not."""
    port = _free_port()
    video = tmp_path / "cam.mp4"
    config = config_from_args(build_parser().parse_args([
        "run", f"cam={long_clip}", "--live", "--serve", str(port), "--webrtc-stamp",
        "-o", str(video), "--no-llm", *TINY,
    ]))  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    stamps = []
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/streams/cam/snapshot.jpg"
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            image = cv2.imdecode(np.frombuffer(await response.read(), np.uint8),
                                                 cv2.IMREAD_COLOR)  # fmt: skip
                            stamps.append((read_stamp(image), time.time()))
                            if len(stamps) >= 3:
                                break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)
    assert len(stamps) >= 3, "no snapshot served"
    for stamp, at in stamps:  # drawn moments before it was fetched
        assert stamp is not None and 0 <= (int(at * 1000) - stamp) % (1 << 32) < 5000
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert frames and all(read_stamp(frame) is None for frame in frames)
