"""Ctrl-C on a benchmark script: one line and exit status 130, not a traceback
(`bench/_entry.run_script`, at the foot of every script)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_script_ends_through_the_entry() -> None:
    foot = 'if __name__ == "__main__":\n    run_script(main)'
    for script in sorted((REPO / "bench").glob("*.py")):
        text = script.read_text()
        if '__name__ == "__main__"' in text:
            assert text.rstrip().endswith(foot), script


def test_ctrl_c_in_the_middle_says_interrupted_and_exits_130(sample_clip) -> None:
    script = REPO / "bench" / "colour_conversion.py"
    child = subprocess.Popen([sys.executable, str(script), "--clip", str(sample_clip),
                              "--frames", "120", "--rounds", "1000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        # past its imports (~0.5 CPU s) and into main: decoding, then timing 1,000 rounds
        deadline = time.monotonic() + 120
        while _cpu_seconds(child.pid) < 1.5 and child.poll() is None:
            assert time.monotonic() < deadline, "the script never got going"
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, (out, err)
    assert err.strip() == "colour_conversion: interrupted" and not re.search("Traceback", err)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
