"""A process that runs encoders on ONNX Runtime queues no usage telemetry: its Linux wheels
write events and a device id under $XDG_CACHE_HOME/Microsoft/DeveloperTools for upload to
Microsoft's collector unless ORT_DISABLE_TELEMETRY is set, which `import encoders` does."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install onnxruntime)")

REPO = Path(__file__).resolve().parents[2]
CHECK = """
{first}
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
print(session.run(None, {{"x": np.full(1, -2.0, np.float32)}})[0][0])
"""


def _written(home: Path, first: str) -> list[str]:
    """Run CHECK with `home` as home and cache folder; the files it left there."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", CHECK.format(first=first)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0.0"  # the session ran
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def test_after_import_encoders_onnxruntime_writes_no_telemetry(tmp_path):
    assert _written(tmp_path, "import encoders") == []


def test_without_it_onnxruntime_would_queue_events(tmp_path):
    """What the switch is for: the same session in a plain process."""
    written = _written(tmp_path, "")
    if not written:
        pytest.skip("this ONNX Runtime writes no telemetry: nothing to turn off")
    assert any("onnxruntime.db" in name for name in written), written
