"""Helpers for the tests of the archive's index: moments from real frames of the sample clip,
annotated by the tiny random CLIP, and moments from seeded random vectors for volume."""

from __future__ import annotations

import functools
from pathlib import Path

import av
import numpy as np

from streamer.analysis.analyzer import Analyzer, Vocabulary
from streamer.analysis.captioner import tag_caption_text
from streamer.archive.moments import Moment, MomentPicker, thumbnail_jpeg
from streamer.archive.store import EncoderSpec

LABELS = ("a rabbit", "a meadow", "a tree", "the sky", "a bird", "a river", "a car")


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, float32."""
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def random_moments(
    count: int, dim: int, *, stream: str = "noise", seed: int = 0, start_wall: float = 1e9
) -> list[Moment]:
    """`count` moments with seeded random unit embeddings, one a second."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((count, dim)))
    return [
        Moment(stream, float(i), start_wall + i, vectors[i], tags=(("static", 0.5),))
        for i in range(count)
    ]


@functools.cache
def decoded_frames(path: Path) -> tuple[tuple[float, np.ndarray], ...]:
    """Every frame of a clip as (media time, HxWx3 uint8 RGB), decoded once per session."""
    with av.open(str(path)) as container:
        return tuple(
            (float(frame.time), frame.to_ndarray(format="rgb24"))
            for frame in container.decode(video=0)
        )


def tiny_spec(encoder) -> EncoderSpec:
    """The spec an archive made by the tiny random CLIP records."""
    return EncoderSpec.of(encoder)


def annotate_clip(
    encoder,
    path: Path,
    *,
    every: int = 5,
    index_every_s: float = 1.0,
    start_wall: float = 1.7e9,
    stream: str = "bunny",
) -> list[Moment]:
    """The moments a run would index from a clip: every `every`-th frame analysed by the
    encoder (tags from a small vocabulary, a tag caption), kept by a `MomentPicker`."""
    frames = decoded_frames(path)[::every]
    embeddings = encoder.embed([image for _, image in frames]).float().numpy()
    vocabulary = Vocabulary(LABELS, encoder.embed_text(list(LABELS)).float().numpy())
    analyzer = Analyzer(vocabulary, top_k=3)
    picker = MomentPicker(index_every_s=index_every_s, scene_threshold=0.3)
    moments = []
    for number, ((pts, image), embedding) in enumerate(zip(frames, embeddings, strict=True)):
        pick = picker.pick(stream, pts, embedding)
        if pick is None:
            continue
        annotation = analyzer.analyze(stream, number * every, pts, embedding)
        moments.append(
            Moment(
                stream=stream,
                media_time=pts,
                wall_time=start_wall + pts,
                embedding=embedding,
                tags=tuple((tag.label, tag.score) for tag in annotation.tags),
                caption=tag_caption_text(annotation),
                caption_source="tags",
                scene_score=pick.scene_score,
                thumbnail=thumbnail_jpeg(image),
                media_path=str(path.resolve()),
                media_size=path.stat().st_size,
                media_mtime=path.stat().st_mtime,
            )
        )
    return moments
