"""bench/backends.py's ONNX Runtime measurements, on models small enough for a test: the
profile's time per operator type, and the int8 matrix-product ceiling."""

import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra (pip install onnxruntime onnx)")
pytest.importorskip("onnxruntime", reason="the onnx extra (pip install onnxruntime onnx)")


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/backends.py")


def _model(path: Path) -> Path:
    """x (4 × 64) → MatMul → Sigmoid → Transpose → y."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Sigmoid", ["h"], ["s"]),
            helper.make_node("Transpose", ["s"], ["y"]),
        ],
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 4])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_the_profile_gives_each_operator_type_its_milliseconds(bench, tmp_path):
    pixels = np.ones((4, 64), dtype=np.float32)
    shares = bench.onnxruntime_time_shares(_model(tmp_path / "small.onnx"), pixels, runs=3)
    assert set(shares) == {"MatMul", "Sigmoid", "Transpose"}
    assert all(ms > 0 for ms in shares.values())
    assert list(shares.values()) == sorted(shares.values(), reverse=True)  # most first


def test_the_int8_ceiling_is_a_rate(bench):
    rate = bench.int8_matmul_ceiling(seconds=0.05)
    assert math.isfinite(rate) and rate > 0
