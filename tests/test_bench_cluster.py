"""The cluster benchmark's `bytes` mode, short: a real simulated cluster, the probe installed in
its Ray workers, and what it measured is what a shard really sends (the overhead and replicas
modes start four clusters each: too long for a test)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # a two-node cluster: about 30 s


def test_bytes_mode_sizes_the_frames_a_shard_sends(tmp_path):
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cluster.py"), "bytes", "--file-seconds", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())["bytes"]
    assert result["analysed"] == 25  # 1 s at 25 fps, every frame
    shapes = {tuple(map(int, s.split("x"))): n for s, n in result["shapes"].items()}
    assert sum(shapes.values()) == 25
    for (height, width, channels), _ in shapes.items():
        assert min(height, width) == 224 and channels == 3  # resized on the shard, not full size
    image = sum(h * w * c * n for (h, w, c), n in shapes.items()) / 25
    # Ray's serializer adds a few hundred bytes of framing per call to the pixels themselves.
    assert image < result["out/frame"] < image + 1024
    dim = 768  # the default encoder's embedding, float32, plus the model time
    assert dim * 4 < result["back/frame"] < dim * 4 + 1024
