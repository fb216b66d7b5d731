"""The batched preprocessing against the libraries' own reference transforms, on real frames."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

import encoders
from encoders.preprocess import center_crop_offsets, preprocess_frames, resized_shape
from encoders.registry import DINOV2_PREPROCESS, OPENAI_MEAN, OPENAI_STD, PreprocessConfig

CPU = torch.device("cpu")
# Per-frame cosine between our embeddings and the reference path's (the acceptance bar).
MIN_COSINE = 0.999
# Mean |difference| of the normalised pixels. Ours lands near 0.002 (PIL's fixed-point
# rounding); skipping antialiasing gives about 0.04 and a one-pixel crop shift about 0.14.
MAX_MEAN_PIXEL_DIFF = 0.01


def test_resized_shape_follows_torchvision_truncation() -> None:
    cfg = PreprocessConfig(224, OPENAI_MEAN, OPENAI_STD)
    assert resized_shape(720, 1280, cfg) == (224, 398)  # 224 * 1280 / 720 = 398.2
    assert resized_shape(1280, 720, cfg) == (398, 224)
    assert resized_shape(100, 100, cfg) == (224, 224)
    assert resized_shape(720, 1280, DINOV2_PREPROCESS) == (256, 455)


def test_center_crop_rounding_matches_each_library() -> None:
    # 455 - 224 = 231: torchvision rounds 115.5 to 116, transformers floors to 115.
    assert center_crop_offsets(256, 455, 224, "round") == (16, 116)
    assert center_crop_offsets(256, 455, 224, "floor") == (16, 115)


def test_preprocess_output_shape_dtype_and_range() -> None:
    frames = torch.full((2, 90, 160, 3), 255, dtype=torch.uint8)
    cfg = PreprocessConfig(64, OPENAI_MEAN, OPENAI_STD)
    out = preprocess_frames(frames, cfg, CPU, torch.float16)
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float16
    expected = (1.0 - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
    torch.testing.assert_close(out[0, :, 10, 10].float(), expected, atol=2e-3, rtol=0)


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


@pytest.fixture(scope="module")
def vit_b32() -> encoders.ClipEncoder:
    """The real ViT-B/32 architecture (OpenAI QuickGELU variant) with random weights."""
    return encoders.create_clip_encoder("ViT-B/32", "cpu", weights="random", precision="fp32")


@pytest.mark.slow
def test_clip_vit_b32_matches_open_clip_reference(vit_b32, video_frames) -> None:
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = open_clip.get_model_preprocess_cfg(vit_b32.module)
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    ref_pixels = torch.stack([reference(PIL.Image.fromarray(f)) for f in video_frames])
    with torch.inference_mode():
        ref_embeddings = vit_b32.module.encode_image(ref_pixels)

    ours = preprocess_frames(
        torch.from_numpy(np.stack(video_frames)), vit_b32.preprocess_cfg, CPU, torch.float32
    )
    assert (ours - ref_pixels).abs().mean() < MAX_MEAN_PIXEL_DIFF
    cosines = _cosines(vit_b32.embed(video_frames), ref_embeddings)
    assert cosines.min() >= MIN_COSINE, cosines


@pytest.mark.slow
def test_dinov2_small_matches_transformers_pil_processor(dinov2_small, video_frames) -> None:
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    from encoders.dinov2 import preprocess_config_to_hf

    hf_cfg = preprocess_config_to_hf(dinov2_small.preprocess_cfg)
    hf_cfg.pop("image_processor_type")
    processor = BitImageProcessorPil(**hf_cfg)
    images = [PIL.Image.fromarray(f) for f in video_frames]
    ref_pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ref_embeddings = dinov2_small.module(pixel_values=ref_pixels).pooler_output

    ours = preprocess_frames(
        torch.from_numpy(np.stack(video_frames)), dinov2_small.preprocess_cfg, CPU, torch.float32
    )
    assert (ours - ref_pixels).abs().mean() < MAX_MEAN_PIXEL_DIFF
    cosines = _cosines(dinov2_small.embed(video_frames), ref_embeddings)
    assert cosines.min() >= MIN_COSINE, cosines


def test_dinov2_preprocess_is_the_facebook_processor_config() -> None:
    # facebook/dinov2-*/preprocessor_config.json, as published.
    from encoders.dinov2 import preprocess_config_from_hf, preprocess_config_to_hf

    published = {
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "BitImageProcessor",
        "image_std": [0.229, 0.224, 0.225],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 256},
    }
    assert preprocess_config_from_hf(published) == DINOV2_PREPROCESS
    assert preprocess_config_from_hf(preprocess_config_to_hf(DINOV2_PREPROCESS)) == (
        DINOV2_PREPROCESS
    )


@pytest.mark.slow
def test_vit_b32_matches_its_registry_spec(vit_b32) -> None:
    spec = next(s for s in encoders.list_encoders() if s.model == "ViT-B/32")
    info = vit_b32.info
    assert (info.dim, info.token_dim) == (spec.dim, spec.token_dim) == (512, 768)
    assert vit_b32.preprocess_cfg == spec.preprocess
    assert vit_b32(np.zeros((224, 224, 3), np.uint8)).shape == (1, spec.tokens, 768)
