"""When to caption, and the caption built from tags.

The schedule runs on media time: a stream gets a caption at its first analysed frame, when the
scene score crosses the threshold (no sooner than `min_interval` after the last one), and when
the last caption is older than `max_age`. Until a language model answers (LLM captions are a
later stage), the caption text is made from the zero-shot tags and marked as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.frame import Annotation, Caption


@dataclass(frozen=True, slots=True)
class CaptionPolicy:
    """Caption timing, in media seconds.

    Attributes:
        min_interval: least time between two captions of a stream.
        max_age: a caption older than this is refreshed even without a scene change.
        scene_threshold: scene score (cosine distance, 0..2) that counts as a scene change.
    """

    min_interval: float = 2.0
    max_age: float = 10.0
    scene_threshold: float = 0.15

    def __post_init__(self) -> None:
        if not self.min_interval >= 0:
            raise ValueError(f"caption min_interval must be ≥ 0 s, got {self.min_interval}")
        if not self.max_age >= self.min_interval:
            raise ValueError(
                f"caption max_age must be ≥ min_interval ({self.min_interval} s), "
                f"got {self.max_age}"
            )
        if not 0 < self.scene_threshold <= 2:
            raise ValueError(f"scene_threshold must be in (0, 2], got {self.scene_threshold}")


class CaptionSchedule:
    """Decides, per stream and in media time, whether an analysed frame gets a caption."""

    def __init__(self, policy: CaptionPolicy) -> None:
        self.policy = policy
        self._last: dict[str, float] = {}

    def due(self, annotation: Annotation) -> bool:
        """True when `annotation`'s frame should be captioned; records it when so."""
        last = self._last.get(annotation.stream)
        if last is not None:
            age = annotation.pts - last
            changed = annotation.scene_score >= self.policy.scene_threshold
            if not (age >= self.policy.max_age or (changed and age >= self.policy.min_interval)):
                return False
        self._last[annotation.stream] = annotation.pts
        return True


def tag_caption_text(annotation: Annotation) -> str:
    """A one-line caption from tags, e.g. "Looks like: a dog, grass, a park"."""
    if not annotation.tags:
        return "No tags: this encoder has no text tower (use a CLIP encoder for tags)."
    return "Looks like: " + ", ".join(tag.label for tag in annotation.tags)


class TagCaptioner:
    """Captions made from the zero-shot tags; a repeat of the stream's last text is not new."""

    source = "tags"

    def __init__(self) -> None:
        self._last_text: dict[str, str] = {}

    def caption(self, annotation: Annotation) -> Caption | None:
        """The caption for `annotation`, or None when it would repeat the current one."""
        text = tag_caption_text(annotation)
        if self._last_text.get(annotation.stream) == text:
            return None
        self._last_text[annotation.stream] = text
        return Caption(
            stream=annotation.stream,
            frame_index=annotation.frame_index,
            pts=annotation.pts,
            text=text,
            source=self.source,
        )
