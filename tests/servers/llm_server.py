"""A real OpenAI-compatible LLM server for the tests: llama-cpp-python's, serving SmolLM2-135M.

`bash scripts/llm_server.sh` (run by `bash scripts/setup.sh --test`) installs
`llama-cpp-python[server]` into .venv and puts the GGUF in `.cache/models/`. The `llm_server`
fixture starts the server once per session on a free loopback port, waits until
`GET /v1/models` answers, and kills it at the end. A missing package or model fails the tests
with the fix: CI must have it.

The server is text-only (an image gets HTTP 500) and interrupts a running request when another
arrives, so tests send one request at a time. Use it from any conftest::

    from servers.llm_server import llm_server  # noqa: F401
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL_PATH = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
STARTUP_TIMEOUT_S = 60.0
FIX = "run `bash scripts/setup.sh --test` (or `bash scripts/llm_server.sh`)"


@dataclass(frozen=True)
class LlmServer:
    """A running server: its OpenAI base URL, the model alias it serves, and its log file."""

    url: str
    model: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _models_answer(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"llama-cpp-python's server exited with {process.returncode}:\n{tail}")
        if _models_answer(url):
            return
        time.sleep(0.2)
    pytest.fail(f"llama-cpp-python's server did not answer {url}/models in {STARTUP_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory) -> Iterator[LlmServer]:
    """llama-cpp-python's server with SmolLM2-135M-Instruct (alias "smollm2"), n_ctx 2048."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(f"llama-cpp-python is not installed in this environment: {FIX}")
    if not MODEL_PATH.is_file():
        pytest.fail(f"the SmolLM2 model is missing ({MODEL_PATH}): {FIX}")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = tmp_path_factory.mktemp("llm-server") / "server.log"
    # One thread: llama.cpp's threads wait for each other by spinning, so two of them beside
    # a busy process on two cores slowed a test's answer from seconds to two minutes
    # (scripts/test.sh runs the encoder tests beside the rest).
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(MODEL_PATH),
               "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1",
               "--verbose", "False"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(process, url, log)
        yield LlmServer(url, MODEL_ALIAS, log)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
