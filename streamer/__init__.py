"""streamer: a real-time video stream processor.

Frames from a source are sampled, micro-batched through an image encoder, turned into zero-shot
tags, scene-change scores and captions, and drawn onto every frame on the way to the outputs.

Example:
    >>> import asyncio
    >>> from streamer import OutputConfig, RunConfig, run_pipeline
    >>> config = RunConfig(input="clip.mp4", outputs=OutputConfig(video="out.mp4", srt="out.srt"))
    >>> summary = asyncio.run(run_pipeline(config))  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from streamer.batcher import BatchPolicy
from streamer.captioner import CaptionPolicy
from streamer.config import AnalysisConfig, OutputConfig, RunConfig, ServeConfig
from streamer.encoder_worker import EncoderChoice
from streamer.errors import (
    ConfigError,
    SourceDecodeError,
    SourceError,
    SourceNotFoundError,
    SourceOpenError,
    StreamerError,
)
from streamer.frame import Annotation, Caption, Frame, Tag
from streamer.pipeline import RunSummary, StreamSummary, run_pipeline

__all__ = [
    "AnalysisConfig",
    "Annotation",
    "BatchPolicy",
    "Caption",
    "CaptionPolicy",
    "ConfigError",
    "EncoderChoice",
    "Frame",
    "OutputConfig",
    "RunConfig",
    "RunSummary",
    "ServeConfig",
    "SourceDecodeError",
    "SourceError",
    "SourceNotFoundError",
    "SourceOpenError",
    "StreamSummary",
    "StreamerError",
    "Tag",
    "__version__",
    "annotate_file",
    "run_pipeline",
]
