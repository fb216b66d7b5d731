"""The environment benchmarks give the child processes they time (`child_env`)."""

import os
import subprocess
import sys
from pathlib import Path

from streamer.bench.measure import child_env

REPO = Path(__file__).resolve().parents[1]


def test_a_timed_child_keeps_its_bytecode_cache_as_an_installed_copy_does(monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    env = child_env(XDG_CACHE_HOME="cache-here")
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "elsewhere"]
    assert env["XDG_CACHE_HOME"] == "cache-here"
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"  # this process's own is untouched
    flag = subprocess.run(
        [sys.executable, "-c", "import sys, streamer; print(sys.flags.dont_write_bytecode, "
         "streamer.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert flag[0] == "0"
    assert Path(flag[1]).resolve().is_relative_to(REPO)


def test_without_overrides_the_shells_variables_pass_through(monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setenv("STREAMER_BENCH_PROBE", "kept")
    env = child_env()
    assert env["PYTHONPATH"] == str(REPO)
    assert env["STREAMER_BENCH_PROBE"] == "kept"
