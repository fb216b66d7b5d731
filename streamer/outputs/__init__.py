"""Sinks: where overlaid frames and analysis results go.

- `VideoWriter`: H.264 MP4 (or any container PyAV writes) with the source's timing and audio.
- `SubtitleWriter`: one SRT/WebVTT cue per caption, in media time.
- `JsonlWriter`: JSON Lines records (`annotation_record`, `caption_record`, `alert_record`,
  `alert_cleared_record`).

Every sink opens its file at construction (a bad path raises `SinkOpenError` at once), writes
as it goes so an interrupted run leaves usable files, and has an idempotent `close`.
"""

from streamer.errors import SinkError, SinkOpenError
from streamer.outputs.jsonl import (
    JsonlWriter,
    alert_cleared_record,
    alert_record,
    annotation_record,
    caption_record,
)
from streamer.outputs.subtitles import SubtitleWriter
from streamer.outputs.video import VideoWriter

__all__ = [
    "JsonlWriter",
    "SinkError",
    "SinkOpenError",
    "SubtitleWriter",
    "VideoWriter",
    "alert_cleared_record",
    "alert_record",
    "annotation_record",
    "caption_record",
]
