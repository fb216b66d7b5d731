"""What is analysed and how: `AnalysisConfig`, the analysis section of a run's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamer.analysis.labels import DEFAULT_PROMPT, load_labels
from streamer.core.batcher import BatchPolicy
from streamer.core.checks import int_at_least, rate_or_all, template_with
from streamer.core.options import Option, option, section, validate, wrong_type

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
        labels: zero-shot vocabulary, a tuple (or list) of labels; None for the shipped
            default. The command line's form, a file or 'dog, cat', is text that
            `streamer.analysis.labels.load_labels` turns into such a tuple; given here, a str
            is refused rather than split into its letters.
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
        if self.labels is not None:
            object.__setattr__(self, "labels", _label_tuple(self.labels))


_LABELS = "a tuple of labels such as ('dog', 'cat'), or None for the shipped vocabulary"


def _label_tuple(labels: Any) -> tuple[str, ...]:
    """`labels` as the tuple a run uses. A str is refused: it is the command line's form (a
    file, or "dog, cat"), which `load_labels` reads; iterated, it would be one label a letter."""
    if isinstance(labels, str):
        raise wrong_type("labels", _LABELS, labels, flag="--labels",
                         fix=f"labels=load_labels({labels!r}) (streamer.analysis.labels) reads "
                         "a file or splits the commas as --labels does")  # fmt: skip
    if not isinstance(labels, list | tuple) or not all(
        isinstance(label, str) and label.strip() for label in labels
    ):
        raise wrong_type("labels", _LABELS, labels, flag="--labels")
    if not labels:
        raise wrong_type("labels", _LABELS, labels, flag="--labels",
                         fix="leave labels out (None) for the shipped vocabulary")  # fmt: skip
    return tuple(labels)
