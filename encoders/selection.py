"""The encoder selection matrix: which encoder and model to use for which job.

`kind` and `model` in each row are valid arguments of `create_encoder`; the `why` is one line
the CLI prints beside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from encoders.errors import UnknownEncoderError

__all__ = ["UseCase", "encoder_matrix", "recommend_encoder"]


@dataclass(frozen=True)
class UseCase:
    """One row of the matrix: a use case and the encoder recommended for it."""

    name: str
    kind: str
    model: str
    why: str


_MATRIX: tuple[UseCase, ...] = (
    UseCase(
        "general captioning",
        "clip",
        "ViT-L/14",
        "text-aligned embeddings give the LLM grounded zero-shot tags; L/14 tags objects and "
        "scenes markedly better than B/32, and captions are throttled, so its cost is affordable",
    ),
    UseCase(
        "real-time video",
        "clip",
        "ViT-B/32",
        "50 tokens per frame make it the cheapest CLIP: dozens of frames per GPU batch at "
        "camera rates, still with text embeddings for tags and alerts",
    ),
    UseCase(
        "medical imaging",
        "dinov2",
        "base",
        "web-caption CLIP knows little about scans; self-supervised DINOv2 features transfer "
        "better to retrieval and linear probes (neither is a diagnostic model)",
    ),
    UseCase(
        "satellite/aerial",
        "dinov2",
        "large",
        "top-down scenes have no canonical orientation and few web captions; DINOv2's dense "
        "patch tokens keep fine spatial detail for change and similarity scoring",
    ),
    UseCase(
        "edge/CPU",
        "clip",
        "ViT-B/32",
        "fewest tokens per image of the trained models (about 4.4 GFLOPs at 224 px), fp32 on "
        "CPU at a few frames per second, and it keeps text tags",
    ),
    UseCase(
        "highest quality",
        "clip",
        "ViT-L/14@336px",
        "the strongest registered CLIP: 336 px input and 577 tokens keep small objects and text "
        "in view, for offline annotation where time is not the limit",
    ),
)


def encoder_matrix() -> list[UseCase]:
    """All rows of the selection matrix, in display order."""
    return list(_MATRIX)


def recommend_encoder(use_case: str) -> UseCase:
    """The row for a use case; case, spaces and punctuation are ignored ("edge-cpu" works).

    Args:
        use_case: one of the matrix's names, e.g. "real-time video".

    Returns:
        The matching `UseCase`.

    Raises:
        UnknownEncoderError: for an unknown use case; the message lists the valid ones.
    """
    key = _normalise(use_case)
    for row in _MATRIX:
        if _normalise(row.name) == key:
            return row
    valid = ", ".join(repr(row.name) for row in _MATRIX)
    raise UnknownEncoderError(f"unknown use case {use_case!r}; valid use cases: {valid}")


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())
