"""The warm path: an export found by its request (`encoders.backends.locator`) is opened without
building the torch model, gives the built encoder's numbers, and is never trusted when stale."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import encoders
from encoders.backends.export_cache import ExportCache
from encoders.backends.locator import find_export, request_for
from encoders.exported import ExportedEncoder

pytest.importorskip("openvino")

ROOT = Path(__file__).resolve().parents[2]


def _create(cache: Path, weights: str = "random"):
    return encoders.create_encoder("clip", "tiny", weights=weights, backend="openvino",
                                   export_cache=cache)  # fmt: skip


def _found(cache: Path, weights: str = "random"):
    request = request_for("clip", "tiny", weights, "openvino", "fp32")  # as placed
    assert request is not None
    return find_export(ExportCache(cache), request)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, object]:
    """One export of the tiny CLIP (random weights) and the encoder built for it; tests copy
    the cache (exporting is the slow part)."""
    cache = tmp_path_factory.mktemp("exports")
    return cache, _create(cache)


@pytest.fixture
def cache(tmp_path, exported) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(exported[0], copy)
    return copy


def _locators(cache: Path) -> list[Path]:
    return sorted((cache / "locators").glob("openvino-*.json"))


def test_a_second_create_opens_the_export_without_building(cache, exported, video_frames):
    built = exported[1]
    assert not isinstance(built, ExportedEncoder)
    assert len(_locators(cache)) == 1
    opened = _create(cache)
    assert isinstance(opened, ExportedEncoder)
    assert opened.info == built.info  # the same description, weights digest included
    assert opened.info.weights_digest is not None
    np.testing.assert_array_equal(opened.embed_array(video_frames), built.embed_array(video_frames))
    # its text tower is the export's (tests/encoders/test_text_tower.py: never built)
    text = opened.embed_text(["a photo of a dog"]).numpy()
    np.testing.assert_allclose(text, built.embed_text(["a photo of a dog"]).numpy(), atol=1e-6)


def test_a_changed_checkpoint_misses(cache, tmp_path) -> None:
    checkpoint = tmp_path / "tiny.pt"
    model = encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")
    model.save(checkpoint)  # the exported weights: the export is found, the locator written
    assert not isinstance(_create(cache, str(checkpoint)), ExportedEncoder)
    assert _found(cache, str(checkpoint)) is not None
    model.save(checkpoint)  # written again (other weights, as far as anyone can tell)
    stamp = checkpoint.stat().st_mtime_ns + 10**9
    os.utime(checkpoint, ns=(stamp, stamp))
    assert _found(cache, str(checkpoint)) is None
    assert _found(cache) is not None  # the random weights' locator is another request


def test_a_damaged_export_misses(cache) -> None:
    assert _found(cache) is not None
    (weights,) = (cache / "openvino").glob("*/image.bin")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte: the same size, another digest
    weights.write_bytes(bytes(data))
    assert _found(cache) is None


def test_an_unreadable_locator_misses(cache) -> None:
    (locator,) = _locators(cache)
    locator.write_text("{not json")
    assert _found(cache) is None


def test_a_locator_for_another_request_misses(cache) -> None:
    (locator,) = _locators(cache)
    saved = json.loads(locator.read_text())
    saved["request"]["precision"] = "fp16"
    locator.write_text(json.dumps(saved))
    assert _found(cache) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda card: card["preprocess"].update(size=0),  # a value the config refuses
        lambda card: card["preprocess"].update(extra=1),  # a field it does not have
        lambda card: card["info"].pop("dim"),
        lambda card: card.update(logit_scale="high"),
    ],
    ids=["bad-size", "unknown-field", "missing-field", "bad-scale"],
)
def test_a_locator_whose_card_does_not_make_an_encoder_misses(cache, edit) -> None:
    # Valid JSON that a hand or another version wrote wrong: a miss (rebuilt), not a crash.
    (locator,) = _locators(cache)
    saved = json.loads(locator.read_text())
    edit(saved["card"])
    locator.write_text(json.dumps(saved))
    assert _found(cache) is None
    assert not isinstance(_create(cache), ExportedEncoder)  # built, and noted again
    assert _found(cache) is not None


def test_a_cache_that_cannot_be_written_is_still_read(cache, monkeypatch, caplog) -> None:
    # An export made ahead of time (`streamer encoders export`) in an image's read-only layer.
    import encoders.factory

    monkeypatch.setattr(encoders.factory, "keeps_exports", lambda root: False)
    for backend in ("openvino", "auto"):
        opened = encoders.create_encoder("clip", "tiny", weights="random", backend=backend,
                                         export_cache=cache, device="cpu")  # fmt: skip
        assert isinstance(opened, ExportedEncoder), backend
    shutil.rmtree(cache / "locators")  # nothing to open now: auto says so and runs torch
    caplog.set_level(logging.WARNING, logger="encoders")
    torch_run = encoders.create_encoder("clip", "tiny", weights="random", backend="auto",
                                        export_cache=cache, device="cpu")  # fmt: skip
    assert torch_run.info.backend == "torch"
    assert any("cannot be written" in r.getMessage() and "runs torch" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    with pytest.raises(encoders.UnsupportedBackendError, match="cannot be written"):
        encoders.create_encoder("clip", "tiny", weights="random", backend="openvino",
                                export_cache=cache)  # fmt: skip


def _subprocess_create(backend: str, cache: Path, calibrate: Path | None = None) -> list[str]:
    """Create the tiny CLIP on `backend` from `cache` in a fresh process (int8 calibrated on 8
    frames of `calibrate`, when given): [its class, its embedding size, whether torch was
    imported]."""
    int8 = f", int8=True, calibration=Calibration({str(calibrate)!r}, 8)" if calibrate else ""
    script = (
        "import sys, numpy as np, encoders\n"
        "from encoders.backends.calibration import Calibration\n"
        f"enc = encoders.create_encoder('clip', 'tiny', weights='random', backend={backend!r}, "
        f"export_cache={str(cache)!r}{int8})\n"
        "out = enc.embed_array(np.zeros((2, 64, 64, 3), np.uint8))\n"
        "print(type(enc).__name__, out.shape[1], 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's encoders
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=180, check=True)  # fmt: skip
    return result.stdout.split()


def test_opening_a_cached_export_imports_no_torch(cache) -> None:
    assert _subprocess_create("openvino", cache) == ["ExportedEncoder", "64", "False"]


# -- ONNX Runtime, and int8 -------------------------------------------------------------------


def test_onnxruntime_opens_its_export_without_building(tmp_path, video_frames) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra (pip install onnxruntime)")
    built = encoders.create_encoder("clip", "tiny", weights="random", backend="onnxruntime",
                                    export_cache=tmp_path)  # fmt: skip
    assert not isinstance(built, ExportedEncoder)
    assert len(list((tmp_path / "locators").glob("onnxruntime-*.json"))) == 1
    opened = encoders.create_encoder("clip", "tiny", weights="random", backend="onnxruntime",
                                     export_cache=tmp_path)  # fmt: skip
    assert isinstance(opened, ExportedEncoder) and opened.info == built.info
    np.testing.assert_array_equal(opened.embed_array(video_frames), built.embed_array(video_frames))
    assert _subprocess_create("onnxruntime", tmp_path) == ["ExportedEncoder", "64", "False"]
    # A search asks for "auto" (OpenVINO here): it opens the ONNX export the run left.
    searched = encoders.open_export("clip", "tiny", weights="random", export_cache=tmp_path)
    assert isinstance(searched, ExportedEncoder) and "ONNX Runtime" in searched.runtime.detail
    assert not searched.runtime.image_ready  # loaded at its first image, as here
    np.testing.assert_array_equal(
        searched.embed_array(video_frames), built.embed_array(video_frames)
    )
    assert searched.runtime.image_ready


@pytest.mark.slow  # the tiny CLIP exported and quantised twice: about 20 s
def test_an_int8_export_opens_without_building_until_the_calibration_changes(
    tmp_path, small_clip, sample_clip, video_frames, monkeypatch
) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra (pip install onnxruntime)")
    pytest.importorskip("nncf", reason="the cpu extra (pip install openvino nncf)")
    from encoders.backends import capture
    from encoders.backends.calibration import Calibration

    def create(clip: Path):
        return encoders.create_encoder("clip", "tiny", weights="random", backend="onnxruntime",
                                       export_cache=tmp_path, int8=True,
                                       calibration=Calibration(clip, frames=8))  # fmt: skip

    captured, capture_text = [], capture.capture_text_tower
    monkeypatch.setattr(capture, "capture_text_tower",
                        lambda *args: captured.append(args) or capture_text(*args))  # fmt: skip
    built = create(small_clip)
    # The int8 export holds the fp32 export's text tower, not a second capture of it.
    assert len(captured) == 1
    fp32, int8 = sorted((tmp_path / "onnxruntime").glob("*/text.onnx"), key=_int8_last)
    assert fp32.read_bytes() == int8.read_bytes()
    opened = create(small_clip)
    assert not isinstance(built, ExportedEncoder) and isinstance(opened, ExportedEncoder)
    np.testing.assert_array_equal(opened.embed_array(video_frames), built.embed_array(video_frames))
    assert opened.runtime.has_text_tower  # so its text needs no torch model either
    np.testing.assert_allclose(opened.embed_text(["a dog"]).numpy(),
                               built.embed_text(["a dog"]).numpy(), atol=1e-5)  # fmt: skip
    warm = _subprocess_create("onnxruntime", tmp_path, small_clip)
    assert warm == ["ExportedEncoder", "64", "False"]
    assert not isinstance(create(sample_clip), ExportedEncoder)  # another calibration: built


def _int8_last(path: Path) -> bool:
    return json.loads((path.parent / "manifest.json").read_text())["key"]["variant"] != "fp32"


def test_open_export_opens_what_a_run_left_and_builds_nothing(
    cache, exported, monkeypatch, video_frames
):
    # The model is named as parse_model_name resolves it: another spelling finds the export.
    import encoders.factory

    def no_build(*args, **kwargs):
        raise AssertionError("open_export built the torch model")

    monkeypatch.setattr(encoders.factory, "_build", no_build)
    opened = encoders.open_export("clip", "TINY", weights="random", export_cache=cache)
    assert isinstance(opened, ExportedEncoder)
    assert opened.info == exported[1].info
    # A text query compiles no image tower (a search's usual query); an image query, then.
    built = exported[1]
    assert not opened.runtime.image_ready
    np.testing.assert_allclose(opened.embed_text_array(["a dog"]),
                               built.embed_text_array(["a dog"]), atol=1e-5)  # fmt: skip
    assert not opened.runtime.image_ready
    np.testing.assert_array_equal(opened.embed_array(video_frames), built.embed_array(video_frames))
    assert opened.runtime.image_ready


def test_open_export_finds_nothing_and_writes_nothing_in_an_empty_cache(tmp_path) -> None:
    empty = tmp_path / "exports"
    assert encoders.open_export("clip", "tiny", weights="random", export_cache=empty) is None
    assert not empty.exists()
    # a backend that opens no exports: nothing to open
    on_torch = encoders.open_export("clip", "tiny", weights="random", export_cache=empty,
                                    backend="torch")  # fmt: skip
    assert on_torch is None
