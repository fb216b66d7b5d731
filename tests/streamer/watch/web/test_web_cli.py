"""`streamer run --serve [HOST:]PORT --serve-token TOKEN`: the flags, and the command serving."""

import asyncio
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest

from streamer.cli.main import build_parser
from streamer.cli.run import config_from_args
from streamer.config import ServeConfig
from streamer.errors import ConfigError

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
                        async with session.get(url + "healthz") as response:
                            refused = response.status
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.2)
            async with session.get(url + "api/status", headers=headers) as response:
                status = await response.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        stderr = await asyncio.wait_for(proc.stderr.read(), 60)
        await proc.wait()
    assert refused == 401
    assert status["streams"][0]["name"] == "cam" and status["streams"][0]["live"]
    assert proc.returncode == 143, stderr.decode()
