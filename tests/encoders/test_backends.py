"""Backends (`encoders.backends`): OpenVINO against torch on real frames, and choosing one.

The export cache has its own tests (test_export_cache.py). Equivalence is measured on real
frames of the sample clip twice: at the resize size, as the pipeline hands them over (the
source scales them while decoding, so only crop and normalisation remain, and the pixels are
the torch path's), and at full size, where the OpenVINO path resizes with PIL (the reference
transforms' resize) and the torch path with its batched interpolation.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from media import at_resize_size

import encoders
from encoders.backends import BACKENDS, choose_backend, openvino_backend, unsupported_reason
from encoders.backends.frames import frames_to_pixels
from encoders.errors import EncoderInputError, UnsupportedBackendError
from encoders.exported import ExportedEncoder
from encoders.preprocess import preprocess_frames
from encoders.registry import Family, register_family, unregister_family

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")

# The acceptance bar of the issue: pooled-embedding cosine of fp32 OpenVINO against torch.
MIN_COSINE = 0.9999
# Tokens, for frames at the resize size (the same pixels in): both run fp32 kernels that sum
# in different orders; measured below 2e-6 on tiny and 2e-5 on ViT-B/32 (values of order 1).
TOKEN_ATOL = 1e-4


def _eight(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Eight different real frames: the four scenes and their mirror images."""
    return [*frames, *(np.ascontiguousarray(f[:, ::-1]) for f in frames)]


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


@pytest.fixture(scope="module")
def tiny_openvino(tmp_path_factory) -> encoders.ClipEncoder:
    cache = tmp_path_factory.mktemp("exports")
    return encoders.create_encoder(
        "clip", "tiny", weights="random", backend="openvino", export_cache=cache
    )


def _check_equivalent(torch_encoder, openvino_encoder, frames, *, tokens: bool) -> None:
    expected, got = torch_encoder.encode(frames), openvino_encoder.encode(frames)
    assert got.embeddings.shape == expected.embeddings.shape
    assert got.tokens.shape == expected.tokens.shape
    assert _cosines(got.embeddings, expected.embeddings).min() >= MIN_COSINE
    if tokens:
        torch.testing.assert_close(got.tokens, expected.tokens, atol=TOKEN_ATOL, rtol=0)


@pytest.mark.parametrize("batch", [1, 8])
def test_openvino_matches_torch_on_frames_at_the_resize_size(
    tiny_clip, tiny_openvino, video_frames, batch
) -> None:
    frames = at_resize_size(_eight(video_frames)[:batch], tiny_clip.preprocess_cfg)
    _check_equivalent(tiny_clip, tiny_openvino, frames, tokens=True)
    assert tiny_openvino.info.backend == "openvino" and tiny_clip.info.backend == "torch"


@pytest.mark.parametrize("batch", [1, 8])
def test_openvino_matches_torch_on_full_size_frames(
    tiny_clip, tiny_openvino, video_frames, batch
) -> None:
    _check_equivalent(tiny_clip, tiny_openvino, np.stack(_eight(video_frames)[:batch]),
                      tokens=False)  # fmt: skip


def test_numpy_preprocessing_gives_the_torch_paths_pixels(tiny_clip, video_frames) -> None:
    cfg = tiny_clip.preprocess_cfg
    frames = np.stack(at_resize_size(video_frames, cfg))
    ours = frames_to_pixels(frames, cfg)
    reference = preprocess_frames(torch.from_numpy(frames), cfg, torch.device("cpu"),
                                  torch.float32)  # fmt: skip
    torch.testing.assert_close(torch.from_numpy(ours), reference, atol=1e-6, rtol=0)


def test_the_openvino_path_runs_no_torch_operation_per_frame(
    tiny_clip, tiny_openvino, video_frames
) -> None:
    frames = at_resize_size(video_frames, tiny_openvino.preprocess_cfg)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        tiny_openvino.embed(frames)
    # Only torch.from_numpy, which hands the results over as tensors (the `Encoder` API)
    # without copying them; the torch path shows its interpolation, addcmul, linear, ... here.
    assert {event.key for event in prof.key_averages()} == {"aten::lift_fresh"}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        tiny_clip.embed(frames)
    assert {"aten::addcmul", "aten::linear"} <= {event.key for event in prof.key_averages()}


def test_input_forms_on_openvino(tiny_openvino, video_frames) -> None:
    frames = video_frames[:2]
    expected = tiny_openvino.embed(np.stack(frames))
    torch.testing.assert_close(tiny_openvino.embed(list(frames)), expected)
    torch.testing.assert_close(tiny_openvino.embed(torch.from_numpy(np.stack(frames))), expected)
    mixed = [frames[0], frames[1][100:400, 200:700].copy(), frames[1]]
    out = tiny_openvino.embed(mixed)
    for i, image in enumerate(mixed):  # grouped by size, given back in order
        torch.testing.assert_close(out[i : i + 1], tiny_openvino.embed(image))
    pixels = preprocess_frames(torch.from_numpy(np.stack(frames)), tiny_openvino.preprocess_cfg,
                               torch.device("cpu"), torch.float32)  # fmt: skip
    normalised = tiny_openvino.embed(pixels)  # model input passes straight through
    assert _cosines(normalised, expected).min() >= MIN_COSINE
    with pytest.raises(EncoderInputError, match="uint8 HxWx3"):
        tiny_openvino.embed(np.zeros((4, 4), np.float64))


def test_text_stays_on_torch_and_agrees(tiny_clip, tiny_openvino) -> None:
    labels = ["a rabbit", "a tree"]
    torch.testing.assert_close(tiny_openvino.embed_text(labels), tiny_clip.embed_text(labels))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_the_default_family_runs_on_the_exporting_backends(tmp_path, video_frames, backend):
    # CLIP B/32 and B/16 and DINOv2 small and base, on both: test_equivalence.py
    pytest.importorskip(backend)
    reference = encoders.create_encoder("default", device="cpu", weights="random")
    openvino = encoders.create_encoder("default", weights="random", backend=backend,
                                       export_cache=tmp_path)  # fmt: skip
    frames = at_resize_size(_eight(video_frames), reference.preprocess_cfg)
    _check_equivalent(reference, openvino, frames, tokens=True)
    # Opened from the cache (no torch model), an image-only family still says it has no text.
    opened = encoders.create_encoder("default", weights="random", backend=backend,
                                     export_cache=tmp_path)  # fmt: skip
    assert isinstance(opened, ExportedEncoder) and not opened.has_text
    with pytest.raises(encoders.UnknownEncoderError, match="no text tower"):
        opened.embed_text(["a dog"])


# -- choosing a backend --------------------------------------------------------------------------


def test_auto_picks_openvino_on_a_cpu_and_torch_elsewhere() -> None:
    assert BACKENDS == ("torch", "onnxruntime", "openvino")
    assert choose_backend("auto", "clip", device="cpu").name == "openvino"
    assert choose_backend("auto", "clip", device="cuda").name == "torch"
    assert choose_backend("auto", "clip", device="cuda:1").name == "torch"
    # bf16 on a CPU: OpenVINO where the CPU computes in bf16 (AVX-512 BF16, AMX), else torch
    bf16 = "openvino" if openvino_backend.cpu_has_bf16() else "torch"
    assert choose_backend("auto", "clip", device="cpu", precision="bf16").name == bf16
    assert choose_backend("auto", "clip", device="cpu", compile=True).name == "torch"
    expected = "torch" if torch.cuda.is_available() else "openvino"
    assert choose_backend("auto", "clip", device=None).name == expected


def test_auto_builds_an_openvino_encoder_on_a_cpu(tmp_path) -> None:
    encoder = encoders.create_encoder("clip", "tiny", weights="random", device="cpu",
                                      backend="auto", export_cache=tmp_path)  # fmt: skip
    assert encoder.info.backend == "openvino" and encoder.info.device == "cpu"
    # no cache to keep the export in: auto keeps torch rather than convert at every start
    assert choose_backend("auto", "clip", device="cpu", cached=False).name == "torch"
    uncached = encoders.create_encoder("clip", "tiny", weights="random", device="cpu",
                                       backend="auto")  # fmt: skip
    assert uncached.info.backend == "torch"


def test_without_openvino_auto_is_torch_and_openvino_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # how Python marks a module unimportable
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert choose_backend("auto", "clip", device="cpu").name == "torch"
    reason = unsupported_reason("openvino", "clip", device="cpu")
    assert 'pip install "openvino>=' in reason and "backend 'torch'" in reason
    assert "streamer[" not in reason  # by name, the index gives another project's 'streamer'
    reason = unsupported_reason("onnxruntime", "clip", device="cpu")
    assert 'pip install "onnxruntime>=' in reason and "backend 'torch'" in reason


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"device": "cuda"}, "runs on the CPU only, got device 'cuda'"),
        ({"device": "cpu", "precision": "fp16"}, "or in int8 (--int8), not 'fp16'"),
        ({"device": "cpu", "compile": True}, "applies to backend 'torch' only"),
    ],
)
def test_combinations_openvino_cannot_run_are_refused_with_the_fix(options, words) -> None:
    reason = unsupported_reason("openvino", "clip", **options)
    assert words in reason and "backend 'torch'" in reason


def test_create_encoder_refuses_an_unsupported_combination_before_building() -> None:
    with pytest.raises(UnsupportedBackendError, match=r"CPU only.*use backend 'torch'"):
        encoders.create_encoder("clip", "tiny", weights="random", device="cuda",
                                backend="openvino")  # fmt: skip
    with pytest.raises(UnsupportedBackendError, match=r"unknown backend 'onnx'.*auto, torch"):
        encoders.create_encoder("clip", "tiny", weights="random", backend="onnx")


def test_a_family_without_an_export_names_the_backends_it_has(tiny_clip) -> None:
    from encoders.clip import FAMILY

    register_family(Family("torchonly", "tiny", FAMILY.parse, FAMILY.specs, FAMILY.create))
    try:
        reason = unsupported_reason("openvino", "torchonly", device="cpu")
        assert "'torchonly' has no 'openvino' export" in reason and "runs on: torch" in reason
        assert choose_backend("auto", "torchonly", device="cpu").name == "torch"
    finally:
        unregister_family("torchonly")


# -- two exports in one process -----------------------------------------------------------------


@pytest.mark.slow  # two tiny exports side by side, twice: about 20 s
def test_exports_on_two_threads_of_one_process_both_succeed(tmp_path) -> None:
    # torch.export's decompositions change torch's global operator tables: without
    # `encoders.export_lock.EXPORT_LOCK`, two at once fail ("Trying to override a python impl ...").
    from concurrent.futures import ThreadPoolExecutor

    pytest.importorskip("onnxruntime", reason="the onnx extra (pip install onnxruntime)")

    def export(backend: str):
        return encoders.create_encoder(
            "clip", "tiny", weights="random", device="cpu", backend=backend
        )  # fmt: skip (in memory: no cache)

    for _ in range(2):
        with ThreadPoolExecutor(2) as pool:
            built = list(pool.map(export, ["openvino", "onnxruntime"]))
        assert [encoder.info.backend for encoder in built] == ["openvino", "onnxruntime"]


# -- a load given up on -------------------------------------------------------------------------


def test_a_load_given_up_on_stops_at_its_next_costly_step(tiny_encoder) -> None:
    # The model's load runs on a thread the run cannot kill; when the run stops waiting, the
    # load must stop at capture and at calibration, as itself (not as "cannot export").
    from encoders.abandon import LoadAbandoned, abandonable, check_abandoned
    from encoders.backends.calibration import quantize
    from encoders.backends.capture import capture_image_tower

    pytest.importorskip("nncf", reason="the cpu extra (pip install openvino nncf)")
    given_up, waiting = threading.Event(), threading.Event()
    given_up.set()
    check_abandoned()  # outside a load: nothing to stop
    with abandonable(waiting):
        check_abandoned()  # the caller still waits
        with abandonable(given_up):
            with pytest.raises(LoadAbandoned):
                capture_image_tower(tiny_encoder, "openvino")
            with pytest.raises(LoadAbandoned):
                quantize(object(), [], [])
        check_abandoned()  # the enclosing load's own event again
    with abandonable(given_up), pytest.raises(LoadAbandoned):
        encoders.create_encoder("clip", "tiny", weights="random", device="cpu")  # before building
