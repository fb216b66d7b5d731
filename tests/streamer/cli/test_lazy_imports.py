"""Commands that run no model import no torch (nor open_clip, transformers): their start is the
Python start, not torch's seconds of imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

_HEAVY = ("torch", "open_clip", "transformers")

_SCRIPT = """
import sys
from streamer.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("IMPORTED", *[name for name in {heavy!r} if name in sys.modules])
"""


def _imported(*argv: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's streamer
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(heavy=_HEAVY), *argv],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("IMPORTED")]
    return line.split()[1:]


@pytest.mark.parametrize(
    "argv",
    [("--help",), ("run", "--help"), ("encoders", "list"), ("config", "--print")],
    ids=["help", "run-help", "encoders-list", "config-print"],
)
def test_a_command_that_runs_no_model_imports_no_torch(argv) -> None:
    assert _imported(*argv) == []
