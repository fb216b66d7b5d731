"""bench/search_start.py on the tiny CLIP: both ways measured in fresh processes, and the
export way's first query runs without torch."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")


@pytest.mark.slow  # an export and four fresh processes, two of them importing torch: ~20 s
def test_the_search_start_bench_compares_both_ways(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "search_start.py"), "--model", "tiny",
         "--rounds", "2"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    assert re.search(r"^export: load .* \(torch imported: False\)$", printed, re.M), printed
    assert re.search(r"^ torch: load .* \(torch imported: True\)$", printed, re.M), printed
    ratio = re.search(r"^export / torch, total_s: (\d+\.\d+)$", printed, re.M)
    assert ratio and float(ratio.group(1)) > 0, printed
    peak = re.search(r"^export: .*peak RSS after the text (\d+) MB, at the end (\d+) MB", printed,
                     re.M)  # fmt: skip
    assert peak and 0 < int(peak.group(1)) <= int(peak.group(2)), printed
