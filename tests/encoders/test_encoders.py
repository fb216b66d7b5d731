"""The `Encoder` interface on the tiny CLIP, the default ViT and DINOv2 small, on real frames."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import encoders
from encoders.base import resolve_dtype
from encoders.errors import UnsupportedBackendError
from encoders.preprocess import preprocess_frames

CPU = torch.device("cpu")
# (fixture, tokens per image, token_dim, dim)
FAMILIES = [
    ("tiny_clip", 17, 64, 64),
    ("default_encoder", 50, 768, 768),
    ("dinov2_small", 257, 384, 384),
]


def _assert_unit_norm(embeddings: torch.Tensor) -> None:
    assert embeddings.dtype == torch.float32
    norms = embeddings.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


@pytest.mark.parametrize(("fixture", "tokens", "token_dim", "dim"), FAMILIES)
def test_shapes_and_normalised_embeddings(request, video_frames, fixture, tokens, token_dim, dim):
    encoder = request.getfixturevalue(fixture)
    batch = np.stack(video_frames[:2])
    assert encoder(video_frames[0]).shape == (1, tokens, token_dim)
    assert encoder(batch).shape == (2, tokens, token_dim)
    embeddings = encoder.embed(batch)
    assert embeddings.shape == (2, dim)
    _assert_unit_norm(embeddings)
    assert encoder.info.dim == dim and encoder.info.token_dim == token_dim
    # Different scenes give different embeddings (the frames reach the model).
    assert not torch.allclose(embeddings[0], embeddings[1], atol=1e-3)


@pytest.mark.parametrize("fixture", [family[0] for family in FAMILIES])
def test_encode_returns_tokens_and_embeddings_from_one_pass(request, video_frames, fixture):
    encoder = request.getfixturevalue(fixture)
    out = encoder.encode(video_frames[0])
    torch.testing.assert_close(out.tokens, encoder(video_frames[0]))
    torch.testing.assert_close(out.embeddings, encoder.embed(video_frames[0]))


def test_a_clip_encoder_and_its_model_go_with_their_last_reference(
    video_frames, freed_with_last_reference
) -> None:
    held = [encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")]
    out = held[0].encode(video_frames[0])  # the token hook has run
    assert out.tokens.shape[1:] == (17, 64)
    assert freed_with_last_reference(held)


def test_all_input_forms_agree(tiny_clip, video_frames) -> None:
    frames = video_frames[:2]
    expected = tiny_clip.embed(np.stack(frames))
    as_tensor = torch.from_numpy(np.stack(frames))
    torch.testing.assert_close(tiny_clip.embed(as_tensor), expected)
    torch.testing.assert_close(tiny_clip.embed(list(frames)), expected)
    torch.testing.assert_close(tiny_clip.embed(torch.from_numpy(frames[0])), expected[:1])
    pixels = preprocess_frames(as_tensor, tiny_clip.preprocess_cfg, CPU, torch.float32)
    torch.testing.assert_close(tiny_clip.embed(pixels), expected)  # normalised: passed through


def test_list_of_different_sizes_keeps_order(tiny_clip, video_frames) -> None:
    big, other = video_frames[0], video_frames[2]
    images = [big, big[100:400, 200:700].copy(), other, other[::2, ::2].copy()]
    out = tiny_clip.encode(images)
    assert out.tokens.shape == (4, 17, 64)
    for i, image in enumerate(images):
        torch.testing.assert_close(out.embeddings[i : i + 1], tiny_clip.embed(image))


def test_read_only_and_flipped_arrays_are_accepted(tiny_clip, video_frames) -> None:
    frame = video_frames[1]
    read_only = frame.copy()
    read_only.flags.writeable = False
    bgr_twice = frame[..., ::-1][..., ::-1]  # negative strides on the way
    expected = tiny_clip.embed(frame)
    torch.testing.assert_close(tiny_clip.embed(read_only), expected)
    torch.testing.assert_close(tiny_clip.embed(bgr_twice), expected)


@pytest.mark.parametrize(
    ("images", "got"),
    [
        (np.zeros((64, 64, 3), np.float32), "dtype float32"),
        (np.zeros((64, 64), np.uint8), "shape (64, 64)"),
        (np.zeros((64, 64, 4), np.uint8), "shape (64, 64, 4)"),
        (torch.zeros(1, 3, 32, 32), "shape (1, 3, 32, 32)"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)], "item 1 of the list"),
        ("frame.jpg", "got str"),
    ],
)
def test_bad_images_raise_with_what_was_given(tiny_clip, images, got) -> None:
    with pytest.raises(encoders.EncoderInputError, match="images must be uint8 HxWx3 RGB") as err:
        tiny_clip.embed(images)
    assert got in str(err.value)
    assert isinstance(err.value, ValueError)


def test_empty_input_is_an_error(tiny_clip) -> None:
    with pytest.raises(encoders.EncoderInputError, match="empty"):
        tiny_clip.embed([])
    with pytest.raises(encoders.EncoderInputError, match="empty"):
        tiny_clip.embed(np.zeros((0, 8, 8, 3), np.uint8))


def test_text_embeddings_use_the_real_tokenizer(tiny_clip, video_frames) -> None:
    texts = ["a rabbit in a meadow", "a city street at night", "a rabbit in a meadow"]
    text = tiny_clip.embed_text(texts)
    assert text.shape == (3, 64)
    _assert_unit_norm(text)
    torch.testing.assert_close(text[0], text[2])
    assert not torch.allclose(text[0], text[1], atol=1e-3)
    torch.testing.assert_close(tiny_clip.embed_text("a rabbit in a meadow"), text[:1])
    assert tiny_clip.embed_text([]).shape == (0, 64)
    assert tiny_clip.has_text and tiny_clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)
    # Image and text live in one space: similarities are defined and bounded.
    sims = tiny_clip.embed(video_frames[0]) @ text.T
    assert sims.shape == (1, 3) and sims.abs().max() <= 1.0 + 1e-5


def test_text_must_be_strings(tiny_clip) -> None:
    with pytest.raises(encoders.EncoderInputError, match="list of str"):
        tiny_clip.embed_text(["ok", 3])


def test_only_clip_has_text(default_encoder, dinov2_small) -> None:
    assert not default_encoder.has_text and not dinov2_small.has_text
    # The text call on an image-only family names the problem and the family to use.
    for encoder, name in ((default_encoder, "default"), (dinov2_small, "dinov2 'small'")):
        with pytest.raises(encoders.UnknownEncoderError, match=f"{name}.*no text tower.*clip"):
            encoder.embed_text(["a dog"])


def test_info_and_repr(tiny_clip, default_encoder) -> None:
    info = tiny_clip.info
    assert (info.kind, info.model, info.image_size) == ("clip", "tiny", 64)
    assert info.num_params == sum(p.numel() for p in tiny_clip.module.parameters())
    assert info.random_weights and info.weights == "random weights (not trained)"
    assert (info.device, info.dtype) == ("cpu", "float32")
    assert "random weights" in repr(default_encoder)
    assert "random weights" in default_encoder.info.weights
    with pytest.raises(AttributeError):
        info.dim = 3  # frozen


def test_preprocess_cfg_comes_from_the_model(tiny_clip) -> None:
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(tiny_clip.module)
    assert tiny_clip.preprocess_cfg.size == cfg["size"][0] == 64
    assert tiny_clip.preprocess_cfg.mean == tuple(cfg["mean"])
    assert tiny_clip.preprocess_cfg.interpolation == cfg["interpolation"]


@pytest.mark.parametrize(("fixture", "model"), [("tiny_clip", "tiny"), ("dinov2_small", "small")])
def test_built_encoders_match_their_registry_spec(request, fixture, model) -> None:
    encoder = request.getfixturevalue(fixture)
    spec = next(s for s in encoders.list_encoders() if s.model == model)
    assert (encoder.dim, encoder.token_dim) == (spec.dim, spec.token_dim)
    assert encoder.preprocess_cfg == spec.preprocess


def test_precision_resolution() -> None:
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="auto, fp32, fp16, bf16, got 'fp8'"):
        resolve_dtype("fp8", torch.device("cpu"))


def test_bf16_model_still_returns_float32_unit_embeddings(video_frames) -> None:
    encoder = encoders.create_encoder("clip", "tiny", weights="random", precision="bf16")
    assert encoder.dtype == torch.bfloat16 and encoder.info.dtype == "bfloat16"
    assert encoder(video_frames[0]).dtype == torch.bfloat16
    _assert_unit_norm(encoder.embed(video_frames[0]))


def test_random_weights_are_seeded_and_the_same_every_build(video_frames) -> None:
    a = encoders.create_default_encoder("cpu")
    b = encoders.create_default_encoder("cpu")
    torch.testing.assert_close(a.embed(video_frames[0]), b.embed(video_frames[0]))


# -- save and reload -----------------------------------------------------------------------


def _perturb(encoder: encoders.Encoder) -> None:
    """Move the weights away from the seeded random init, so a reload is really a reload."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in encoder.module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.02)


def _assert_reload_identical(original, reloaded, fresh, frames) -> None:
    torch.testing.assert_close(reloaded.embed(frames), original.embed(frames), rtol=0, atol=1e-6)
    assert (fresh.embed(frames) - original.embed(frames)).abs().max() > 1e-3
    assert not reloaded.info.random_weights


def test_tiny_clip_save_and_reload(tmp_path: Path, video_frames) -> None:
    original = encoders.create_clip_encoder("tiny", "cpu", weights="random")
    _perturb(original)
    path = original.save(tmp_path / "tiny.pt")
    reloaded = encoders.create_clip_encoder("tiny", "cpu", weights=str(path))
    fresh = encoders.create_clip_encoder("tiny", "cpu", weights="random")
    _assert_reload_identical(original, reloaded, fresh, video_frames[:2])
    torch.testing.assert_close(reloaded.embed_text(["a bunny"]), original.embed_text(["a bunny"]))
    assert reloaded.info.weights == f"local file {path.resolve()}"


def test_default_save_and_reload(tmp_path: Path, video_frames) -> None:
    original = encoders.create_default_encoder("cpu")
    _perturb(original)
    path = original.save(tmp_path / "sub" / "default.pt")
    reloaded = encoders.create_encoder("default", weights=str(path), device="cpu")
    fresh = encoders.create_default_encoder("cpu")
    _assert_reload_identical(original, reloaded, fresh, video_frames[:2])


def test_dinov2_save_and_reload(tmp_path: Path, video_frames, dinov2_small) -> None:
    original = encoders.create_dinov2_encoder("small", "cpu", weights="random")
    _perturb(original)
    for target in ("dinov2-folder", "dinov2.safetensors", "dinov2.pt"):
        path = original.save(tmp_path / target)
        reloaded = encoders.create_dinov2_encoder("small", "cpu", weights=str(path))
        _assert_reload_identical(original, reloaded, dinov2_small, video_frames[:2])
        assert reloaded.preprocess_cfg == original.preprocess_cfg
        kind = "folder" if path.is_dir() else "file"
        assert reloaded.info.weights == f"local {kind} {path.resolve()}"


# -- CUDA out of memory --------------------------------------------------------------------


def _oom_when(encoder, monkeypatch, too_big) -> list[int]:
    """Make the model's image forward raise CUDA OOM when `too_big(pixels)`; log batch sizes."""
    calls: list[int] = []
    forward = encoder.module.encode_image

    def flaky(pixels, *args, **kwargs):
        calls.append(len(pixels))
        if too_big(pixels):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return forward(pixels, *args, **kwargs)

    monkeypatch.setattr(encoder.module, "encode_image", flaky)
    return calls


def test_oom_splits_the_batch_and_matches_the_unsplit_run(monkeypatch, video_frames) -> None:
    encoder = encoders.create_clip_encoder("tiny", "cpu", weights="random")
    images = [*video_frames, video_frames[0][::2, ::2].copy()]  # 4 + 1 frames: two groups
    expected = encoder.encode(images)
    calls = _oom_when(encoder, monkeypatch, lambda pixels: len(pixels) > 2)
    got = encoder.encode(images)
    assert calls == [4, 2, 2, 1]
    torch.testing.assert_close(got.tokens, expected.tokens)
    torch.testing.assert_close(got.embeddings, expected.embeddings)
    assert encoder.device == CPU and encoder.dtype == torch.float32


def test_oom_at_batch_one_falls_back_to_cpu_fp32_and_says_so(
    monkeypatch, caplog, video_frames
) -> None:
    # fp16 stands in for "on the GPU": the injected OOM fires while the model is half precision.
    encoder = encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp16")
    calls = _oom_when(encoder, monkeypatch, lambda px: px.dtype == torch.float16)
    with caplog.at_level(logging.WARNING, logger="encoders"):
        embeddings = encoder.embed(np.stack(video_frames[:2]))
    assert calls == [2, 1, 1, 1]  # 2 -> OOM, 1 -> OOM -> fallback, 1 ok (fp32), then 1 ok
    assert (encoder.device, encoder.dtype, encoder.info.dtype) == (CPU, torch.float32, "float32")
    assert any("moved the model to the CPU" in r.getMessage() for r in caplog.records)
    reference = encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")
    cosines = torch.nn.functional.cosine_similarity(embeddings, reference.embed(video_frames[:2]))
    assert cosines.min() > 0.999  # the same model, weights once rounded through fp16


def test_oom_on_cpu_fp32_at_batch_one_is_raised(monkeypatch, video_frames) -> None:
    encoder = encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")
    _oom_when(encoder, monkeypatch, lambda pixels: True)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        encoder.embed(video_frames[:2])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_precision_is_fp16(video_frames) -> None:
    encoder = encoders.create_clip_encoder("tiny", weights="random")
    assert encoder.device.type == "cuda" and encoder.dtype == torch.float16
    embeddings = encoder.embed(video_frames)
    assert embeddings.device.type == "cuda"
    _assert_unit_norm(embeddings)


def test_fp16_on_the_cpu_warns_that_it_is_slow(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="encoders"):
        encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp16")
        slow = [r.getMessage() for r in caplog.records if "precision fp16 on the CPU" in r.msg]
        encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")
    assert len(slow) == 1 and "use fp32" in slow[0]
    assert sum("precision fp16 on the CPU" in r.msg for r in caplog.records) == 1


@pytest.mark.parametrize("device", ["gpu", "past-the-last-cuda"])
def test_a_device_torch_does_not_know_or_this_machine_lacks_is_named(device):
    """torch's own error is a traceback from its first CUDA call ("Found no NVIDIA driver")."""
    if device == "past-the-last-cuda":
        device = f"cuda:{torch.cuda.device_count()}"  # on any machine, one more than it has
        words = "CUDA device"
    else:
        words = "is not one torch knows"
    with pytest.raises(UnsupportedBackendError, match=words):
        encoders.create_encoder("clip", "tiny", weights="random", device=device)
