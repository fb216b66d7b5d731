"""`streamer run --backend openvino` as a user runs it: the same records as torch, exported once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from media import read_jsonl

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPORTING = "exporting clip 'tiny' to OpenVINO"


def _run(small_clip, out, backend: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamer", "run", str(small_clip), "--jsonl", str(out),
         "--model", "tiny", "--weights", "random", "--device", "cpu", "--no-llm",
         "--analyze-fps", "all", "--no-progress", "--backend", backend],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip


def test_openvino_run_writes_the_records_torch_writes(tmp_path, small_clip) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    runs = {}
    for backend in ("torch", "openvino", "openvino"):
        done = _run(small_clip, tmp_path / f"{backend}.jsonl", backend, env)
        assert done.returncode == 0, done.stderr
        runs.setdefault(backend, []).append(done.stderr)
    first, second = runs["openvino"]
    assert EXPORTING in first and EXPORTING not in second  # the second run loads the export
    assert "runs on OpenVINO" in second and "OpenVINO" not in runs["torch"][0]
    expected = [r for r in read_jsonl(tmp_path / "torch.jsonl") if r["type"] == "analysis"]
    got = [r for r in read_jsonl(tmp_path / "openvino.jsonl") if r["type"] == "analysis"]
    assert len(got) == len(expected) > 0
    for ours, theirs in zip(got, expected, strict=True):
        assert [t["label"] for t in ours["tags"]] == [t["label"] for t in theirs["tags"]]
        # scores are written to 4 decimals; the embeddings agree to about 1e-6
        for mine, reference in zip(ours["tags"], theirs["tags"], strict=True):
            assert mine["score"] == pytest.approx(reference["score"], abs=2e-4)
        assert ours["scene_score"] == pytest.approx(theirs["scene_score"], abs=2e-4)


def test_a_live_first_run_starts_on_torch_and_leaves_the_export_for_the_next(tmp_path, small_clip):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    live = [sys.executable, "-m", "streamer", "run", str(small_clip), "--live", "--model",
            "tiny", "--weights", "random", "--no-llm", "--no-progress", "--backend",
            "openvino"]  # fmt: skip
    first = subprocess.run([*live, "--jsonl", str(tmp_path / "first.jsonl")], capture_output=True,
                           text=True, timeout=240, env=env)  # fmt: skip
    assert first.returncode == 0, first.stderr
    # its frames start on torch; the export, made beside them, is whole when the process ends
    assert "clip 'tiny' runs on torch while process" in first.stderr
    assert EXPORTING not in first.stderr  # (the child's log is its own)
    assert "the openvino export of clip 'tiny' is ready" in first.stderr
    second = subprocess.run([*live, "--jsonl", str(tmp_path / "second.jsonl")],
                            capture_output=True, text=True, timeout=240, env=env)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "opened from the export cache, no torch model built" in second.stderr
    records = [r for r in read_jsonl(tmp_path / "first.jsonl") if r["type"] == "analysis"]
    assert records and all(r["tags"] for r in records)
