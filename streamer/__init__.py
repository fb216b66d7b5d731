"""streamer: a real-time video stream processor.

Frames from a source are sampled, micro-batched through an image encoder, turned into zero-shot
tags, scene-change scores and captions, and drawn onto every frame on the way to the outputs.

Example:
    >>> import asyncio
    >>> from streamer import OutputConfig, RunConfig, run_pipeline
    >>> config = RunConfig(input="clip.mp4", outputs=OutputConfig(video="out.mp4", srt="out.srt"))
    >>> summary = asyncio.run(run_pipeline(config))  # doctest: +SKIP

The names below load on first use (PEP 562), so `import streamer.sources` or
`import streamer.core` never pays for the pipeline's imports (torch, open_clip).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name → the module that defines it
_EXPORTS = {
    "AnalysisConfig": "streamer.analysis.options",
    "Annotation": "streamer.core.frame",
    "BatchPolicy": "streamer.core.batcher",
    "Caption": "streamer.core.frame",
    "CaptionPolicy": "streamer.analysis.captioner",
    "ConfigError": "streamer.errors",
    "EncoderChoice": "streamer.analysis.worker",
    "Frame": "streamer.core.frame",
    "OutputConfig": "streamer.outputs.options",
    "RunConfig": "streamer.config",
    "RunSummary": "streamer.report",
    "ServeConfig": "streamer.watch.web.options",
    "SourceDecodeError": "streamer.errors",
    "SourceError": "streamer.errors",
    "SourceNotFoundError": "streamer.errors",
    "SourceOpenError": "streamer.errors",
    "StreamSummary": "streamer.report",
    "StreamerError": "streamer.errors",
    "Tag": "streamer.core.frame",
    "__version__": "streamer.core.version",
    "annotate_file": "streamer.pipeline",
    "run_pipeline": "streamer.pipeline",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from streamer.analysis.captioner import CaptionPolicy
    from streamer.analysis.options import AnalysisConfig
    from streamer.analysis.worker import EncoderChoice
    from streamer.config import RunConfig
    from streamer.core.batcher import BatchPolicy
    from streamer.core.frame import Annotation, Caption, Frame, Tag
    from streamer.core.version import __version__
    from streamer.errors import (
        ConfigError,
        SourceDecodeError,
        SourceError,
        SourceNotFoundError,
        SourceOpenError,
        StreamerError,
    )
    from streamer.outputs.options import OutputConfig
    from streamer.pipeline import annotate_file, run_pipeline
    from streamer.report import RunSummary, StreamSummary
    from streamer.watch.web.options import ServeConfig
