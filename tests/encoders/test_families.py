"""The family table: a family registered here shows up everywhere encoders are listed or chosen.

The family is a tiny real `Encoder` (one patch-embedding convolution), registered for one test
and unregistered after it, so the other tests see the built-in table only.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import encoders
from encoders import registry
from encoders.base import RANDOM_WEIGHTS, Encoder, resolve_device, resolve_dtype, seeded
from encoders.registry import EncoderSpec, Family, ModelRef, PreprocessConfig

ROOT = Path(__file__).resolve().parents[2]

PREPROCESS = PreprocessConfig(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
BUILT_IN = ("clip", "dinov2", "default")


class PatchEncoder(Encoder):
    """Tokens = 16-pixel patches embedded by one convolution; embedding = the first token."""

    kind = "patches"

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self._module(pixels).flatten(2).transpose(1, 2)
        return tokens, tokens[:, 0]

    @property
    def dim(self) -> int:
        return 8

    @property
    def token_dim(self) -> int:
        return 8


def _parse(name: str) -> ModelRef:
    if name.strip().lower() != "p16":
        raise encoders.UnknownEncoderError(f"unknown patches model {name!r}; valid: p16")
    return ModelRef("patches", "p16", "p16")


def _create(ref: ModelRef, device, *, weights: str, precision: str) -> PatchEncoder:
    target = resolve_device(device)
    with seeded(0):
        module = nn.Conv2d(3, 8, 16, stride=16)
    return PatchEncoder(
        module, ref, PREPROCESS, RANDOM_WEIGHTS, target, resolve_dtype(precision, target)
    )


SPEC = EncoderSpec("patches", "p16", 8, 8, 5, PREPROCESS, "random (test family)", False)
FAMILY = Family("patches", "p16", _parse, lambda: [SPEC], _create, has_text=False)


@pytest.fixture
def patches() -> Iterator[Family]:
    registry.register_family(FAMILY)
    try:
        yield FAMILY
    finally:
        registry.unregister_family("patches")


def test_a_registered_family_is_listed_parsed_and_created(patches) -> None:
    assert registry.kinds() == (*BUILT_IN, "patches")
    assert (*BUILT_IN, "patches") == registry.KINDS
    assert encoders.list_encoders()[-1] == SPEC
    assert registry.parse_model_name("Patches") == ModelRef("patches", "p16", "p16")
    assert registry.parse_model_name("patches", "P16").name == "p16"
    encoder = encoders.create_encoder("patches", weights="random", device="cpu")
    assert isinstance(encoder, PatchEncoder) and encoder.info.model == "p16"
    embeddings = encoder.embed([np.full((40, 60, 3), 90, np.uint8)])
    assert embeddings.shape == (1, 8)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(1))


def test_the_family_is_gone_once_unregistered(patches) -> None:
    registry.unregister_family("patches")
    try:
        assert registry.kinds() == BUILT_IN
        assert all(spec.kind != "patches" for spec in encoders.list_encoders())
        with pytest.raises(
            encoders.UnknownEncoderError, match=r"valid kinds: clip, dinov2, default$"
        ):
            encoders.create_encoder("patches")
    finally:
        registry.register_family(patches)  # for the fixture's own unregistering


def test_an_unknown_kind_lists_every_registered_kind(patches) -> None:
    with pytest.raises(encoders.UnknownEncoderError) as info:
        registry.parse_model_name("resnet")
    assert (
        str(info.value)
        == "unknown encoder kind 'resnet'; valid kinds: clip, dinov2, default, patches"
    )
    with pytest.raises(encoders.UnknownEncoderError, match="valid: p16"):
        registry.parse_model_name("patches", "p32")


def test_a_kind_is_registered_once(patches) -> None:
    with pytest.raises(ValueError, match="'patches' is already registered"):
        registry.register_family(FAMILY)
    with pytest.raises(ValueError, match="lower-case"):
        Family("Patches", "p16", _parse, lambda: [SPEC], _create)
    with pytest.raises(encoders.UnknownEncoderError, match="'nothing'"):
        registry.unregister_family("nothing")


def test_the_cli_offers_the_registered_kinds(patches) -> None:
    from streamer.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["run", "in.mp4", "--encoder", "PATCHES"])
    assert args.encoder == "patches"


def test_the_built_in_families_know_their_text_towers_and_defaults() -> None:
    by_kind = {family.kind: family for family in registry.families()}
    assert tuple(by_kind) == BUILT_IN
    assert {kind: f.has_text for kind, f in by_kind.items()} == {
        "clip": True, "dinov2": False, "default": False
    }  # fmt: skip
    for family in by_kind.values():
        assert registry.parse_model_name(family.kind).name == family.default_model
        assert all(spec.has_text == family.has_text for spec in family.specs())


def test_names_that_moved_into_their_family_modules_still_import_from_the_registry() -> None:
    from encoders import clip, default, dinov2

    assert registry.CLIP_MODELS is clip.CLIP_MODELS
    assert registry.DINOV2_PREPROCESS is dinov2.DINOV2_PREPROCESS
    assert registry.DEFAULT_MODEL == default.DEFAULT_MODEL == "vit-4x768"
    with pytest.raises(AttributeError, match="no attribute 'NOPE'"):
        registry.NOPE  # noqa: B018


def test_building_a_clip_model_leaves_the_root_logger_to_the_program() -> None:
    """open_clip logs through `logging.warning` & co., which would set up the root logger (a
    program's own `basicConfig` afterwards did nothing). In a fresh process: no root handler
    after a build, and the program's format is the one its lines come out in."""
    script = (
        "import logging, encoders\n"
        "encoders.create_encoder('clip', 'tiny', weights='random')\n"
        "print(len(logging.getLogger().handlers))\n"
        "logging.basicConfig(level=logging.INFO, format='MYAPP %(message)s')\n"
        "logging.getLogger('myapp').info('hello')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
    assert "MYAPP hello" in done.stderr
