"""Embeddings → zero-shot tags and scene-change scores.

Tags are the softmax, over the label vocabulary, of the scaled cosine similarity between an
image embedding and each label's text embedding (CLIP's zero-shot classifier). The scene score
is the cosine distance from the embedding at the stream's last caption, so a caption is asked
for when the picture has moved away from what the last caption described.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.core.frame import Annotation, Tag


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Labels and their text embeddings.

    Attributes:
        labels: label strings, in order.
        embeddings: [len(labels), dim] float32, rows L2-normalised.
        logit_scale: multiplier applied to cosine similarities before the softmax (CLIP's is 100).
    """

    labels: tuple[str, ...]
    embeddings: np.ndarray
    logit_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.embeddings.shape[0] != len(self.labels):
            raise ValueError(
                f"embeddings must have one row per label ({len(self.labels)}), "
                f"got shape {self.embeddings.shape}"
            )


class Analyzer:
    """Turns image embeddings into `Annotation`s, keeping a reference embedding per stream.

    Args:
        vocabulary: labels for zero-shot tags; None when the encoder has no text tower (then
            annotations carry no tags, only scene scores).
        top_k: how many tags each annotation keeps.

    A stream may have labels of its own (`use`, from the stream API): its tags come from them
    from its next analysed frame on; the others keep the run's.
    """

    def __init__(self, vocabulary: Vocabulary | None, top_k: int = 3) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be ≥ 1, got {top_k}")
        self.vocabulary = vocabulary
        self.top_k = top_k
        self._reference: dict[str, np.ndarray] = {}
        self._own: dict[str, Vocabulary] = {}  # streams with labels of their own

    def use(self, stream: str, vocabulary: Vocabulary | None) -> None:
        """Tag `stream` with `vocabulary` from now on; None gives it the run's again."""
        if vocabulary is None:
            self._own.pop(stream, None)
        else:
            self._own[stream] = vocabulary

    def vocabulary_of(self, stream: str) -> Vocabulary | None:
        """The vocabulary `stream`'s tags come from."""
        return self._own.get(stream, self.vocabulary)

    def forget(self, stream: str) -> None:
        """Drop what is kept for a stream that left the run."""
        self._own.pop(stream, None)
        self._reference.pop(stream, None)

    def analyze(
        self, stream: str, frame_index: int, pts: float, embeddings: np.ndarray
    ) -> Annotation:
        """Annotate one analysed frame from its L2-normalised embedding ([dim])."""
        reference = self._reference.get(stream)
        scene = 0.0 if reference is None else float(1.0 - embeddings @ reference)
        return Annotation(
            stream=stream,
            frame_index=frame_index,
            pts=pts,
            tags=self._tags(embeddings, self.vocabulary_of(stream)),
            scene_score=max(0.0, scene),
        )

    def tag_batch(self, embeddings: np.ndarray) -> list[tuple[Tag, ...]]:
        """Top tags for each row of a [batch, dim] array."""
        return [self._tags(row, self.vocabulary) for row in embeddings]

    def set_reference(self, stream: str, embedding: np.ndarray) -> None:
        """Remember the embedding a caption was made from; scene scores measure from it."""
        self._reference[stream] = embedding

    def _tags(self, embedding: np.ndarray, vocabulary: Vocabulary | None) -> tuple[Tag, ...]:
        if vocabulary is None:
            return ()
        logits = vocabulary.logit_scale * (vocabulary.embeddings @ embedding)
        logits = logits - logits.max()
        probs = np.exp(logits)
        probs /= probs.sum()
        k = min(self.top_k, len(probs))
        best = np.argpartition(-probs, k - 1)[:k]
        best = best[np.argsort(-probs[best], kind="stable")]
        return tuple(Tag(vocabulary.labels[i], float(probs[i])) for i in best)
