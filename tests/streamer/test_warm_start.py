"""A warm `streamer run` from a cached export: no torch imported, the first run's records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from media import read_jsonl

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")

ROOT = Path(__file__).resolve().parents[2]

_RUN = """
import sys
from streamer.cli.main import main
code = main(sys.argv[1:])
print("TORCH", "torch" in sys.modules)
print("OPEN_CLIP", "open_clip" in sys.modules)
sys.exit(code)
"""


def _run(clip: Path, out: Path, cache: Path, model: str = "tiny", *extra: str) -> bool:
    """`streamer run` in a child process; whether it imported torch (and so open_clip)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", _RUN, "run", str(clip), "--jsonl", str(out), "--encoder", "clip",
         "--model", model, "--weights", "random", "--backend", "openvino", "--no-llm",
         "--analyze-fps", "5", "--no-progress", *extra],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("TORCH")]
    (clip_line,) = [x for x in done.stdout.splitlines() if x.startswith("OPEN_CLIP")]
    if clip_line == "OPEN_CLIP True":
        assert line == "TORCH True"  # open_clip imports torch: one answer covers both
    return line == "TORCH True"


def _tags(path: Path) -> list[tuple]:
    return [(r["frame"], [t["label"] for t in r["tags"]]) for r in read_jsonl(path)
            if r["type"] == "analysis"]  # fmt: skip


@pytest.mark.slow
def test_a_warm_run_imports_no_torch_and_writes_the_first_run_s_records(tmp_path, small_clip):
    cache = tmp_path / "cache"
    assert _run(small_clip, tmp_path / "first.jsonl", cache)  # builds the model, exports it
    assert not _run(small_clip, tmp_path / "warm.jsonl", cache)  # opens the export
    first, warm = _tags(tmp_path / "first.jsonl"), _tags(tmp_path / "warm.jsonl")
    assert len(first) == 10 and warm == first
    # A query no run embedded before runs on the export's text tower: still no torch.
    assert not _run(small_clip, tmp_path / "alert.jsonl", cache, "tiny", "--alert", "a red kite")
    assert _tags(tmp_path / "alert.jsonl") == first


@pytest.mark.slow
def test_a_warm_run_with_an_open_clip_name_imports_neither_open_clip_nor_torch(
    tmp_path, small_clip
):
    """An open_clip spelling (`ViT-B-32`, as `ViT-B-32:laion2b_s34b_b79k` is written) is
    checked against open_clip's config files, not by importing it: the warm run stays as
    light as with a registered name."""
    cache = tmp_path / "cache"
    assert _run(small_clip, tmp_path / "first.jsonl", cache, "ViT-B-32")
    assert not _run(small_clip, tmp_path / "warm.jsonl", cache, "ViT-B-32")
    assert _tags(tmp_path / "warm.jsonl") == _tags(tmp_path / "first.jsonl")
