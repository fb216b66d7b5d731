"""What is analysed and how: `AnalysisConfig`, the analysis section of a run's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamer.analysis.labels import DEFAULT_PROMPT, load_labels
from streamer.core.batcher import BatchPolicy
from streamer.core.checks import int_at_least, rate_or_all, template_with
from streamer.core.options import Option, option, section, validate

__all__ = ["AnalysisConfig"]


def _every_frame(rate: Any) -> float | None:
    """`--analyze-fps all` (or None) analyses every frame: the field holds None."""
    return None if rate is None or rate == "all" else rate


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    """What is analysed and how.

    Attributes:
        analyze_fps: analysed frames per media second; None analyses every frame.
        batch: micro-batching of analysed frames onto the encoder.
        top_k: tags kept per analysed frame.
        labels: zero-shot vocabulary; None for the shipped default.
        prompt: text template per label; must contain "{label}".
        text_cache: folder for cached label text embeddings (a str or an `os.PathLike`, kept
            as its str); None computes them every run.
    """

    analyze_fps: float | None = option(
        2.0,
        Option("--analyze-fps", "analysed frames per second, > 0, or 'all'", rate_or_all(),
               to_field=_every_frame),
    )  # fmt: skip
    batch: BatchPolicy = section(BatchPolicy)
    top_k: int = option(3, Option("--top-k", "tags per analysed frame", int_at_least(1)))
    labels: tuple[str, ...] | None = option(
        None,
        Option("--labels", "label file (one per line) or 'dog, cat, person'",
               to_field=load_labels, default_text="the shipped vocabulary"),
    )  # fmt: skip
    prompt: str = option(
        DEFAULT_PROMPT,
        Option("--label-prompt", "text template per label, with {label} where the label goes",
               template_with("label")),
    )  # fmt: skip
    text_cache: str | None = option(None, path=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "analyze_fps", _every_frame(self.analyze_fps))
        validate(self)
