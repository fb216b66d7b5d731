"""The outputs of one stream: overlay drawing plus the video, subtitle and JSON Lines sinks.

`write_frame` and `close` run on the pipeline's writer thread; `record_*` run on the event loop
(they only append a line to small text files).
"""

from __future__ import annotations

import logging

from encoders import EncoderInfo
from streamer.config import OutputConfig
from streamer.frame import Annotation, Caption, Frame
from streamer.overlay import Hud, Overlay, OverlayStyle
from streamer.sinks import (
    JsonlWriter,
    SubtitleWriter,
    VideoWriter,
    annotation_record,
    caption_record,
)
from streamer.sources import FileSource

log = logging.getLogger("streamer.outputs")

RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: tags and captions are meaningless"


class Outputs:
    """Everything one stream writes. Build with `Outputs.open`."""

    def __init__(
        self,
        video: VideoWriter | None,
        subtitles: SubtitleWriter | None,
        jsonl: JsonlWriter | None,
        overlay: Overlay,
        hud_model: str,
        warning: str | None,
        expected: int | None,
    ) -> None:
        self.video = video
        self.subtitles = subtitles
        self.jsonl = jsonl
        self.overlay = overlay
        self.hud_model = hud_model
        self.warning = warning
        self.expected = expected
        self.end_pts = 0.0
        self._closed = False

    @classmethod
    def open(cls, config: OutputConfig, source: FileSource, info: EncoderInfo) -> Outputs:
        """Create every output `config` names; on failure, close what was already opened."""
        opened: list = []
        try:
            video = None
            if config.video:
                meta = source.info
                video = VideoWriter(
                    config.video,
                    width=meta.width,
                    height=meta.height,
                    time_base=meta.time_base,
                    rate=meta.fps,
                    audio_from=source.path if config.copy_audio and meta.audio else None,
                    preset=config.preset,
                    crf=config.crf,
                )
                opened.append(video)
            subtitles = None
            if config.srt or config.vtt:
                subtitles = SubtitleWriter(config.srt, config.vtt)
                opened.append(subtitles)
            jsonl = JsonlWriter(config.jsonl) if config.jsonl else None
        except BaseException:
            for sink in opened:
                sink.close() if not isinstance(sink, SubtitleWriter) else sink.close(0.0)
            raise
        warning = RANDOM_WEIGHTS_WARNING if info.random_weights else None
        if warning:
            log.warning("%s (%s %s)", warning, info.kind, info.model)
        return cls(
            video,
            subtitles,
            jsonl,
            Overlay(OverlayStyle()),
            f"{info.kind} {info.model}",
            warning,
            source.info.frames,
        )

    def record_analysis(self, annotation: Annotation) -> None:
        if self.jsonl:
            self.jsonl.write(annotation_record(annotation))

    def record_caption(self, caption: Caption) -> None:
        if self.subtitles:
            self.subtitles.add(caption)
        if self.jsonl:
            self.jsonl.write(caption_record(caption))

    def write_frame(
        self, frame: Frame, annotation: Annotation | None, caption: Caption | None
    ) -> None:
        """Draw the overlay and write the frame (writer thread)."""
        self.end_pts = max(self.end_pts, frame.pts + self._frame_duration(frame))
        if self.video is None:
            return
        total = f"/{self.expected}" if self.expected else ""
        hud = Hud(
            lines=(
                f"{frame.stream}  {frame.pts:7.2f} s  frame {frame.index + 1}{total}",
                self.hud_model,
            ),
            warning=self.warning,
            status=None,
        )
        image = self.overlay.draw(
            frame.image, annotation=annotation, caption=caption, now_pts=frame.pts, hud=hud
        )
        self.video.write(image, frame.pts_raw if frame.pts_raw is not None else frame.index)

    def _frame_duration(self, frame: Frame) -> float:
        rate = self.video.rate if self.video is not None else None
        return float(1 / rate) if rate else 0.04

    def close(self) -> None:
        """Finish every output; each is closed even when another fails."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for close in (self._close_video, self._close_subtitles, self._close_jsonl):
            try:
                close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _close_video(self) -> None:
        if self.video:
            self.video.close()

    def _close_subtitles(self) -> None:
        if self.subtitles:
            self.subtitles.close(self.end_pts)

    def _close_jsonl(self) -> None:
        if self.jsonl:
            self.jsonl.close()
