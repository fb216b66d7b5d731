"""Around what benchmarks time: the environment of their child processes (`child_env`) and
the machine their header names (`cpu_line`)."""

import os
import subprocess
import sys
from pathlib import Path

from streamer.bench.measure import child_env, cpu_line

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


def test_the_machine_line_names_the_cpu_and_the_features_its_speed_turns_on() -> None:
    xeon = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6430\n"
            "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8\n\n"
            "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6430\n")  # fmt: skip
    line = cpu_line(xeon)
    assert line.startswith("Intel(R) Xeon(R) Gold 6430, ")
    assert line.endswith(" cores (AVX2, AVX-512, VNNI, bf16, AMX)")
    laptop = "model name\t: Intel(R) Core(TM) i5-8250U\nflags\t\t: fpu sse2 avx2 fma\n"
    assert cpu_line(laptop).endswith(" cores (AVX2)")
    assert "(" not in cpu_line("")  # no /proc/cpuinfo (macOS, Windows): no feature list
