"""Model-name parsing, the spec table and the preprocessing config."""

from __future__ import annotations

import subprocess
import sys

import pytest

import encoders
from encoders.clip import CLIP_MODELS, check_tag
from encoders.dinov2 import DINOV2_PREPROCESS
from encoders.registry import ModelRef, PreprocessConfig, parse_model_name


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("ViT-B/32", "ViT-B-32-quickgelu"),
        ("ViT-B/16", "ViT-B-16-quickgelu"),
        ("ViT-L/14", "ViT-L-14-quickgelu"),
        ("ViT-L/14@336px", "ViT-L-14-336-quickgelu"),
    ],
)
def test_openai_names_map_to_quickgelu_archs_with_openai_weights(name: str, arch: str) -> None:
    assert parse_model_name("clip", name) == ModelRef("clip", name, arch, "openai")


def test_openai_names_are_known_to_open_clip_with_an_openai_tag() -> None:
    import open_clip

    pretrained = set(open_clip.list_pretrained())
    for model in CLIP_MODELS:
        if model.tag is not None:
            assert (model.arch, model.tag) in pretrained


def test_clip_defaults_to_vit_b32_and_matches_case_insensitively() -> None:
    assert parse_model_name("clip").name == "ViT-B/32"
    assert parse_model_name("CLIP", "vit-b/32").arch == "ViT-B-32-quickgelu"


def test_open_clip_name_with_and_without_tag() -> None:
    assert parse_model_name("clip", "ViT-B-32") == ModelRef("clip", "ViT-B-32", "ViT-B-32", None)
    ref = parse_model_name("clip", "ViT-B-32:laion2b_s34b_b79k")
    assert (ref.arch, ref.tag) == ("ViT-B-32", "laion2b_s34b_b79k")


def test_tiny_is_a_registered_open_clip_model() -> None:
    assert parse_model_name("clip", "tiny") == ModelRef("clip", "tiny", "tiny", None)
    import open_clip

    assert open_clip.get_model_config("tiny")["vision_cfg"]["patch_size"] == 16


def test_unknown_clip_name_lists_the_valid_names() -> None:
    with pytest.raises(encoders.UnknownEncoderError) as info:
        parse_model_name("clip", "ViT-B/33")
    message = str(info.value)
    for name in ("ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px", "tiny"):
        assert name in message
    assert "ViT-B-32" in message  # the closest open_clip names
    assert isinstance(info.value, ValueError)


def test_unknown_tag_lists_the_valid_tags_when_the_model_is_built() -> None:
    ref = parse_model_name("clip", "ViT-B-32:nope")  # the tag list needs open_clip imported
    with pytest.raises(encoders.UnknownEncoderError, match="laion2b_s34b_b79k"):
        encoders.create_encoder("clip", "ViT-B-32:nope", weights="random", device="cpu")
    with pytest.raises(encoders.UnknownEncoderError, match="valid tags"):
        check_tag(ref)
    check_tag(parse_model_name("clip", "ViT-B-32:laion2b_s34b_b79k"))  # a real one passes


def test_empty_tag_is_refused() -> None:
    with pytest.raises(encoders.UnknownEncoderError, match="empty"):
        parse_model_name("clip", "ViT-B-32:")


def test_open_clip_names_are_read_as_open_clip_lists_them() -> None:
    """`model_names` reads open_clip's config files instead of importing it: the same list."""
    from encoders import _openclip

    from_files = set(_openclip._config_file_names())
    assert set(_openclip.load_open_clip().list_models()) == from_files
    assert {"ViT-B-32", "ViT-L-14", "tiny"} <= from_files


def test_parsing_an_open_clip_name_imports_neither_open_clip_nor_torch() -> None:
    """A run from a cached export parses its model name at start: that must not cost the
    seconds of importing open_clip, torch and torchvision."""
    code = (
        "import sys; from encoders.registry import parse_model_name; import encoders.clip; "
        "ref = parse_model_name('clip', 'ViT-B-32:laion2b_s34b_b79k'); "
        "print(ref.arch, ref.tag, 'open_clip' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["ViT-B-32", "laion2b_s34b_b79k", "False", "False"]


def test_openai_names_take_no_tag() -> None:
    with pytest.raises(encoders.UnknownEncoderError, match="take no tag"):
        parse_model_name("clip", "ViT-B/32:openai")


@pytest.mark.parametrize("name", ["small", "base", "large", "giant", "facebook/dinov2-base"])
def test_dinov2_sizes(name: str) -> None:
    ref = parse_model_name("dinov2", name)
    assert ref.arch == f"facebook/dinov2-{ref.name}"
    assert ref.name in name


def test_unknown_dinov2_size_lists_sizes() -> None:
    with pytest.raises(encoders.UnknownEncoderError, match="small, base, large, giant"):
        parse_model_name("dinov2", "huge")


def test_default_kind_and_unknown_kind() -> None:
    assert parse_model_name("default").name == "vit-4x768"
    with pytest.raises(encoders.UnknownEncoderError, match="vit-4x768"):
        parse_model_name("default", "vit-huge")
    with pytest.raises(encoders.UnknownEncoderError, match="clip, dinov2, default"):
        encoders.create_encoder("resnet")


def test_list_encoders_covers_every_kind_and_registered_model() -> None:
    specs = {(s.kind, s.model): s for s in encoders.list_encoders()}
    expected = {("clip", m.name) for m in CLIP_MODELS}
    expected |= {("dinov2", size) for size in ("small", "base", "large", "giant")}
    expected |= {("default", "vit-4x768")}
    assert set(specs) == expected
    assert specs[("clip", "ViT-B/32")].tokens == 50
    assert specs[("clip", "ViT-L/14@336px")].preprocess.size == 336
    assert specs[("dinov2", "giant")].dim == 1536
    assert "random" in specs[("default", "vit-4x768")].weights
    assert specs[("dinov2", "small")].preprocess == DINOV2_PREPROCESS
    assert all(s.has_text == (s.kind == "clip") for s in specs.values())


def test_preprocess_config_validates_with_the_bad_value_in_the_message() -> None:
    mean, std = (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)
    with pytest.raises(ValueError, match="interpolation must be one of bicubic, bilinear"):
        PreprocessConfig(224, mean, std, interpolation="nearest")
    with pytest.raises(ValueError, match=r"resize_mode .* got 'longest'"):
        PreprocessConfig(224, mean, std, resize_mode="longest")
    with pytest.raises(ValueError, match="std > 0"):
        PreprocessConfig(224, mean, (0.2, 0.0, 0.2))
    cfg = PreprocessConfig(224, [0.5, 0.5, 0.5], [0.2, 0.2, 0.2], resize_size=256)
    assert cfg.mean == mean and cfg.resize_target == 256
    hash(cfg)  # frozen and hashable
