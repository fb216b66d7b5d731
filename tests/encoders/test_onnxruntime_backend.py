"""The ONNX Runtime backend against torch on real frames, int8 on both exporting backends, and
the combinations that are refused with their fix.

The full-size models' equivalence (CLIP B/32 and B/16, DINOv2 small and base, on both exporting
backends) is test_equivalence.py; here the tiny CLIP, whose exports take seconds.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from media import at_resize_size

import encoders
from encoders.backends import choose_backend, cpu_has_vnni, family_backends, unsupported_reason
from encoders.backends.calibration import Calibration
from encoders.errors import CalibrationError, UnsupportedBackendError

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install onnxruntime)")

MIN_COSINE = 0.9999  # fp32 against torch, the bar
# Tokens, same pixels in: fp32 kernels summing in other orders; measured below 3e-6 on tiny.
TOKEN_ATOL = 1e-4


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> encoders.Encoder:
    cache = tmp_path_factory.mktemp("exports")
    return encoders.create_encoder(
        "clip", "tiny", weights="random", backend="onnxruntime", export_cache=cache
    )


@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_torch_on_real_frames(tiny_clip, tiny_onnx, video_frames, batch):
    frames = at_resize_size(video_frames[:batch], tiny_clip.preprocess_cfg)
    expected, got = tiny_clip.encode(frames), tiny_onnx.encode(frames)
    assert F.cosine_similarity(got.embeddings, expected.embeddings).min() >= MIN_COSINE
    torch.testing.assert_close(got.tokens, expected.tokens, atol=TOKEN_ATOL, rtol=0)
    full = tiny_onnx.embed(np.stack(video_frames[:batch]))  # resized by PIL, as the reference
    assert F.cosine_similarity(full, tiny_clip.embed(np.stack(video_frames[:batch]))).min() >= (
        MIN_COSINE
    )
    assert tiny_onnx.info.backend == "onnxruntime" and tiny_onnx.info.device == "cpu"


def test_the_onnx_export_is_cached_and_reloaded(tmp_path, tiny_clip, caplog) -> None:
    caplog.set_level(logging.INFO, logger="encoders")
    weights = str(tiny_clip.save(tmp_path / "tiny.pt"))
    options = {"weights": weights, "backend": "onnxruntime", "export_cache": tmp_path / "c"}
    first = encoders.create_encoder("clip", "tiny", **options)
    (folder,) = (p for p in (tmp_path / "c" / "onnxruntime").iterdir() if p.is_dir())
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["image.onnx", "manifest.json", "text.onnx"]  # CLIP: its text tower too
    assert sum("exporting" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    again = encoders.create_encoder("clip", "tiny", **options)
    assert not any("exporting" in r.getMessage() for r in caplog.records)
    frame = np.full((64, 64, 3), 90, np.uint8)
    torch.testing.assert_close(again.embed(frame), first.embed(frame))


# -- int8 ----------------------------------------------------------------------------------------


@pytest.mark.slow  # an fp32 export and a quantisation each: 8-15 s
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int8_is_calibrated_on_the_clip_and_kept_beside_the_fp32_export(
    tmp_path, sample_clip, tiny_clip, video_frames, backend, caplog
) -> None:
    pytest.importorskip("nncf", reason="the cpu extra (pip install openvino nncf)")
    levels = [h.level for h in logging.getLogger().handlers]
    tiny_clip.save(tmp_path / "tiny.pt")  # the same weights on every backend
    calibration = Calibration(sample_clip, frames=16)
    int8 = encoders.create_encoder("clip", "tiny", weights=str(tmp_path / "tiny.pt"),
                                   backend=backend, export_cache=tmp_path / "cache",
                                   int8=True, calibration=calibration)  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "cache" / backend).iterdir() if p.is_dir())
    assert len(names) == 2 and [n for n in names if "-int8-" in n]  # fp32 and int8, beside
    frames = at_resize_size(video_frames, tiny_clip.preprocess_cfg)
    cosine = F.cosine_similarity(int8.embed(frames), tiny_clip.embed(frames))
    assert cosine.min() >= 0.95 and cosine.mean() < 0.99999  # close, and really quantised
    # Quantising leaves the process's logging as it was: NNCF's own level setter once raised
    # the root's handlers to ERROR (pytest's capture among them: every later warning lost).
    assert [h.level for h in logging.getLogger().handlers] == levels
    logging.getLogger("streamer.test").warning("still heard")
    assert "still heard" in caplog.text


def test_int8_without_frames_or_on_an_unreadable_clip_names_the_file_and_the_fix(
    tmp_path,
) -> None:
    pytest.importorskip("nncf", reason="the cpu extra (pip install openvino nncf)")
    with pytest.raises(CalibrationError, match=r"calibration=PATH .*--calibrate PATH"):
        encoders.create_encoder("clip", "tiny", weights="random", backend="openvino", int8=True)
    garbage = tmp_path / "notes.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    for path, words in [(tmp_path / "missing.mp4", "no such file"), (garbage, "PyAV cannot")]:
        with pytest.raises(CalibrationError, match=words) as caught:
            encoders.create_encoder("clip", "tiny", weights="random", backend="onnxruntime",
                                    int8=True, calibration=path)  # fmt: skip
        assert str(path) in str(caught.value) and "--calibrate PATH" in str(caught.value)
        assert "drop --int8" in str(caught.value)


# -- choosing --------------------------------------------------------------------------------------


def test_onnxruntime_refuses_cuda_with_the_reason_and_the_fix() -> None:
    reason = unsupported_reason("onnxruntime", "clip", device="cuda")
    assert "CPU only" in reason and "onnxruntime-gpu" in reason and "backend 'torch'" in reason
    with pytest.raises(UnsupportedBackendError, match="CPU only"):
        encoders.create_encoder("clip", "tiny", weights="random", device="cuda:0",
                                backend="onnxruntime")  # fmt: skip


def test_int8_needs_an_exporting_backend() -> None:
    pytest.importorskip("nncf", reason="the cpu extra (pip install openvino nncf)")
    reason = unsupported_reason("torch", "clip", device="cpu", int8=True)
    assert "backend 'openvino'" in reason and "drop --int8" in reason
    fast_int8 = "openvino" if cpu_has_vnni() else "onnxruntime"  # AVX2 only: ONNX Runtime's
    assert choose_backend("auto", "clip", device="cpu", int8=True).name == fast_int8
    assert "no backend can run int8" in unsupported_reason("auto", "clip", device="cuda",
                                                           int8=True)  # fmt: skip
    assert unsupported_reason("onnxruntime", "dinov2", device="cpu", int8=True) is None


def test_every_built_in_family_runs_on_every_backend() -> None:
    for kind in ("clip", "dinov2", "default"):
        assert family_backends(kind) == ("torch", "onnxruntime", "openvino")
