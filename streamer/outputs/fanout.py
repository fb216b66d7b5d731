"""The outputs of one stream: overlay drawing plus the video, subtitle and JSON Lines sinks.

`write_frame` and `close` run on the stream's writer thread; `record_*` run on the event loop
(they only append a line to small text files). The video file is opened at the first frame,
when the frame size is known (a live camera's is not before it connects).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import cv2

from streamer.core.events import Observers
from streamer.core.frame import Annotation, Caption, Frame
from streamer.outputs import (
    JsonlWriter,
    SubtitleWriter,
    VideoWriter,
    annotation_record,
    caption_record,
)
from streamer.outputs.options import OutputConfig
from streamer.outputs.overlay import Hud, Overlay, OverlayStyle

log = logging.getLogger("streamer.outputs.fanout")

RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: tags and captions are meaningless"
LIVE_TIME_BASE = Fraction(1, 1000)  # live video is timed by the wall clock, in milliseconds
LIVE_NOMINAL_FPS = 25.0  # a live stream's rate is not known ahead: keyframe spacing assumes this


@dataclass(frozen=True, slots=True)
class VideoTiming:
    """How frames are timed in the output video.

    Attributes:
        time_base: units of the written timestamps.
        rate: nominal frame rate, None when variable (live).
        media: True writes the source's own timestamps (files); False the stream timeline.
        origin: the source tick written as 0 (`VideoInfo.origin`, in `time_base` units).
    """

    time_base: Fraction
    rate: Fraction | None
    media: bool
    origin: int = 0


class Outputs:
    """Everything one stream writes.

    Args:
        config: this stream's output paths (already filled in with the stream name).
        timing: how the video is timed.
        audio_from: a file whose audio is copied into the video, or None.
        name: the stream's name (what observers are told).
        observers: who else sees the drawn frames (web viewer, window).
    """

    def __init__(
        self,
        config: OutputConfig,
        timing: VideoTiming,
        audio_from: str | None,
        name: str = "",
        observers: Observers | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.observers = observers if observers is not None else Observers()
        self.timing = timing
        self.audio_from = audio_from
        self.overlay = Overlay(OverlayStyle())
        self.video: VideoWriter | None = None
        self.end_pts = 0.0
        self._closed = False
        self._resize_warned = False
        self.subtitles = (
            SubtitleWriter(config.srt, config.vtt) if config.srt or config.vtt else None
        )
        try:
            self.jsonl = JsonlWriter(config.jsonl) if config.jsonl else None
        except BaseException:
            if self.subtitles:
                self.subtitles.close(0.0)
            raise

    def record_analysis(self, annotation: Annotation, **extra: object) -> None:
        if self.jsonl:
            self.jsonl.write({**annotation_record(annotation), **extra})

    def record_caption(self, caption: Caption) -> None:
        if self.subtitles:
            self.subtitles.add(caption)
        if self.jsonl:
            self.jsonl.write(caption_record(caption))

    def record(self, record: dict) -> None:
        if self.jsonl:
            self.jsonl.write(record)

    def write_frame(
        self,
        frame: Frame,
        timeline: float,
        annotation: Annotation | None,
        caption: Caption | None,
        hud: Hud,
        shared: bool = False,
    ) -> None:
        """Draw the overlay and write the frame (writer thread).

        Args:
            frame: the frame.
            timeline: the frame's time on the stream's timeline (media time for files,
                seconds since start for live streams).
            annotation, caption: what to show.
            hud: the heads-up lines.
            shared: the frame's pixels are also read elsewhere (by the encoder or a caption
                request, possibly at this moment): draw on a copy, not on them.
        """
        self.end_pts = max(self.end_pts, timeline + self._frame_duration())
        watched = self.observers.wants_frames
        if not self.config.video and not watched:
            return
        if watched and self.observers.wants_raw and self._hand_raw(frame, timeline, shared):
            return
        image = frame.image.copy() if shared else frame.image
        image = self.overlay.draw(
            image, annotation=annotation, caption=caption, now_pts=timeline, hud=hud
        )
        if watched:
            self.observers.frame(self.name, image, timeline)
        if not self.config.video:
            return
        video = self._video_for(image)
        if (image.shape[1], image.shape[0]) != self._video_size:
            image = self._fit(image)
        if self.timing.media and frame.pts_raw is not None:
            video.write(image, frame.pts_raw)
        else:
            video.write(image, round(timeline / self.timing.time_base))

    def _hand_raw(self, frame: Frame, timeline: float, shared: bool) -> bool:
        """Give the observers that want frames without the overlay the frame as decoded.

        Returns True when nothing else needs the frame drawn (no video, no observer of drawn
        frames): then it is not drawn at all.
        """
        drawn = bool(self.config.video) or self.observers.wants_drawn
        # The overlay draws in place on an unshared frame: the raw observers keep a clean copy.
        raw = frame.image.copy() if drawn and not shared else frame.image
        self.observers.frame(self.name, raw, timeline, raw=True)
        return not drawn

    def _video_for(self, image) -> VideoWriter:
        if self.video is None:
            height, width = image.shape[:2]
            self._video_size = (width, height)
            fragmented = self.config.fragmented
            if fragmented is None:
                fragmented = not self.timing.media  # live: a crash must not lose the file
            rate = float(self.timing.rate) if self.timing.rate else LIVE_NOMINAL_FPS
            self.video = VideoWriter(
                self.config.video, width=width, height=height, time_base=self.timing.time_base,
                rate=self.timing.rate, audio_from=self.audio_from, preset=self.config.preset,
                crf=self.config.crf, fragmented=fragmented, origin=self.timing.origin,
                keyframe_every=max(1, round(rate * self.config.keyframe_seconds))
                if fragmented else None,
            )  # fmt: skip
        return self.video

    def _fit(self, image):
        # A live source can come back at another resolution; the file keeps its first size.
        if not self._resize_warned:
            log.warning(
                "%s: frame size changed to %dx%d; scaling to the video's %dx%d",
                self.config.video,
                image.shape[1],
                image.shape[0],
                *self._video_size,
            )
            self._resize_warned = True
        return cv2.resize(image, self._video_size, interpolation=cv2.INTER_AREA)

    def _frame_duration(self) -> float:
        return float(1 / self.timing.rate) if self.timing.rate else 0.04

    def close(self) -> None:
        """Finish every output; each is closed even when another fails."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for close in (self._close_video, self._close_subtitles, self._close_jsonl):
            try:
                close()
            except Exception as exc:  # collected, and the first re-raised below
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
