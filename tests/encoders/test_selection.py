"""The encoder selection matrix."""

from __future__ import annotations

import pytest

import encoders
from encoders.registry import parse_model_name

USE_CASES = (
    "general captioning",
    "real-time video",
    "medical imaging",
    "satellite/aerial",
    "edge/CPU",
    "highest quality",
)


def test_matrix_has_every_use_case_with_a_valid_encoder() -> None:
    rows = encoders.encoder_matrix()
    assert tuple(row.name for row in rows) == USE_CASES
    for row in rows:
        ref = parse_model_name(row.kind, row.model)  # each row is buildable as written
        assert ref.kind == row.kind
        assert row.why and "\n" not in row.why


def test_recommend_encoder_ignores_case_and_punctuation() -> None:
    assert encoders.recommend_encoder("real-time video").model == "ViT-B/32"
    assert encoders.recommend_encoder("Edge CPU") == encoders.recommend_encoder("edge/CPU")
    assert encoders.recommend_encoder("satellite_aerial").kind == "dinov2"


def test_unknown_use_case_lists_the_valid_ones() -> None:
    with pytest.raises(encoders.UnknownEncoderError) as err:
        encoders.recommend_encoder("underwater")
    for name in USE_CASES:
        assert repr(name) in str(err.value)


def test_rows_are_frozen() -> None:
    row = encoders.encoder_matrix()[0]
    with pytest.raises(AttributeError):
        row.model = "other"
