"""`precision="bf16"` on OpenVINO: the fp32 export compiled to compute in bf16, where the CPU
has bf16 arithmetic (AVX-512 BF16 or AMX), and refused with the fix where it has none.

Where the CPU has none, OpenVINO quietly computes a bf16-hinted model in fp32, so the tests
that pretend otherwise check the plumbing (the hint, the export shared with fp32, the warm
path, what `info` says); on a CPU with bf16 the same tests check the bf16 numbers too.
"""

from __future__ import annotations

import pytest

import encoders
from encoders.backends import choose_backend, openvino_backend, unsupported_reason
from encoders.errors import UnsupportedBackendError
from encoders.exported import ExportedEncoder

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")

#: pooled-embedding cosine of bf16 against torch's fp32 (bf16 keeps 8 bits of mantissa;
#: ViT-B/32 measured 0.99999 on an AVX-512 BF16 CPU, BENCHMARKS.md)
MIN_BF16_COSINE = 0.999


def _create(precision: str, cache=None):
    return encoders.create_encoder("clip", "tiny", weights="random", device="cpu",
                                   precision=precision, backend="openvino",
                                   export_cache=cache)  # fmt: skip


def test_bf16_is_refused_with_the_fix_where_the_cpu_has_none(monkeypatch) -> None:
    monkeypatch.setattr(openvino_backend, "cpu_has_bf16", lambda: False)
    reason = unsupported_reason("openvino", "clip", device="cpu", precision="bf16")
    assert reason is not None
    assert "AVX-512 BF16 or AMX" in reason and "precision 'fp32'" in reason
    with pytest.raises(UnsupportedBackendError, match="bf16 arithmetic"):
        _create("bf16")
    # auto does what was asked on the backend that can: torch computes bf16 on any CPU
    assert choose_backend("auto", "clip", device="cpu", precision="bf16").name == "torch"
    # ONNX Runtime stays fp32 only, whatever the CPU
    monkeypatch.setattr(openvino_backend, "cpu_has_bf16", lambda: True)
    assert "fp32 only" in unsupported_reason("onnxruntime", "clip", device="cpu", precision="bf16")
    assert choose_backend("auto", "clip", device="cpu", precision="bf16").name == "openvino"


def test_bf16_compiles_the_fp32_export_and_opens_it_warm(monkeypatch, tmp_path, video_frames):
    really = openvino_backend.cpu_has_bf16()
    monkeypatch.setattr(openvino_backend, "cpu_has_bf16", lambda: True)
    cache = tmp_path / "exports"
    built = _create("bf16", cache)
    assert not isinstance(built, ExportedEncoder)
    assert (built.info.backend, built.info.dtype) == ("openvino", "bfloat16")
    assert "in bf16" in built.runtime.detail
    assert openvino_backend.compile_config("bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    hint = str(built.runtime._image().get_property("INFERENCE_PRECISION_HINT"))
    # OpenVINO names the type "bf16" or "<Type: 'bfloat16'>" by version; a CPU without bf16
    # computes in fp32 anyway
    assert ("bf16" in hint or "bfloat16" in hint) == really, hint
    torch_fp32 = encoders.create_encoder("clip", "tiny", weights="random", device="cpu")
    reference = torch_fp32.embed_array(video_frames)
    cosines = (built.embed_array(video_frames) * reference).sum(axis=1)
    assert cosines.min() >= MIN_BF16_COSINE, cosines

    again = _create("bf16", cache)  # warm: the export opened and compiled in bf16, no model
    assert isinstance(again, ExportedEncoder)
    assert again.info == built.info and "in bf16" in again.runtime.detail
    # one export, one locator: fp32 opens what bf16 made without building the model either
    # (compiled as torch computes)
    fp32 = _create("fp32", cache)
    assert isinstance(fp32, ExportedEncoder)
    assert (fp32.info.backend, fp32.info.dtype) == ("openvino", "float32")
    assert " in bf16" not in fp32.runtime.detail
    assert (fp32.embed_array(video_frames) * reference).sum(axis=1).min() >= 0.9999  # as fp32
    assert len([p for p in (cache / "openvino").iterdir() if p.is_dir()]) == 1  # one for both
