"""Commands that run no model import no torch (nor open_clip, transformers): their start is the
Python start, not torch's seconds of imports. Nor aiohttp (~80 ms, two TLS contexts built at
its import), which only a run that talks HTTP (an LLM, the viewer, a webhook) loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

COMMANDS = (["--help"], ["run", "--help"], ["encoders", "list"], ["config", "--print"])

# One child process runs the commands one after the other (a child is a second or two of
# imports) and says, after each, which of the heavy libraries are loaded by then.
_SCRIPT = """
import sys
from streamer.cli.main import main
for argv in {commands!r}:
    try:
        main(argv)
    except SystemExit:
        pass
    heavy = [name for name in ("torch", "open_clip", "transformers", "aiohttp")
             if name in sys.modules]
    print("IMPORTED", " ".join(argv), "->", *heavy)
"""


def test_commands_that_run_no_model_import_no_torch() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's streamer
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(commands=COMMANDS)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    lines = [x for x in done.stdout.splitlines() if x.startswith("IMPORTED")]
    assert lines == [f"IMPORTED {' '.join(argv)} ->" for argv in COMMANDS], done.stderr[-2000:]
