"""The file-annotation pipeline: every stage as a task in one TaskGroup.

::

    FileSource (decode thread) ─► frames ─► route ─┬─► sampled ─► batch_items ─► batches ─► analyse
                                                   │                                          │
                                                   └─► outgoing (frame + its analysis future) ◄┘
                                                           │
                                                      deliver: overlay + video/SRT/VTT/JSONL
                                                      (one writer thread, in frame order)

File contract: nothing is dropped (every channel blocks when full) and every frame shows the
analysis of the latest analysed frame at or before it, so output does not depend on speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from encoders import Encoder
from streamer.analyzer import Analyzer, Vocabulary
from streamer.batcher import batch_items
from streamer.captioner import CaptionSchedule, TagCaptioner
from streamer.channel import Channel
from streamer.config import RunConfig
from streamer.encoder_worker import EncoderWorker, load_encoder
from streamer.frame import Annotation, Caption, Frame
from streamer.labels import default_labels, prompts
from streamer.outputs import Outputs
from streamer.progress import Counters, ProgressBar
from streamer.sampler import Sampler
from streamer.sources import FileSource, open_source
from streamer.text_cache import cached_text_embeddings

log = logging.getLogger("streamer")


@dataclass(frozen=True, slots=True)
class Analysis:
    """The result of analysing one sampled frame: its annotation, and a caption if one is due."""

    annotation: Annotation
    caption: Caption | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a run ended.

    Attributes:
        frames: frames written to the outputs.
        analysed: frames the encoder saw.
        captions: captions made.
        wall_s: seconds from the first frame decoded to outputs closed.
        interrupted: the run was stopped before the end of the input.
        incomplete: why the input ended early (truncated or damaged), None when it decoded whole.
        random_weights: the encoder ran with untrained weights.
        loop_lag_max_s: the longest the event loop was seen blocked.
    """

    frames: int
    analysed: int
    captions: int
    wall_s: float
    interrupted: bool
    incomplete: str | None
    random_weights: bool
    loop_lag_max_s: float

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


async def annotate_file(
    config: RunConfig,
    *,
    encoder: Encoder | None = None,
    stop: asyncio.Event | None = None,
    progress: bool = False,
) -> RunSummary:
    """Annotate one video file into the outputs `config` names.

    Args:
        config: the run.
        encoder: an encoder already loaded (else `config.encoder` is loaded, in a thread).
        stop: set it to end early; the outputs are finalised with what was written so far.
        progress: draw a progress bar on stderr.

    Returns:
        What happened.

    Raises:
        SourceError: the input cannot be opened (before any output is created).
        EncoderError: the encoder cannot be loaded.
        SinkError: an output cannot be written.
    """
    source = open_source(config.input)
    if encoder is None:
        encoder = await asyncio.to_thread(load_encoder, config.encoder)
    run = _FileRun(config, source, encoder, stop or asyncio.Event(), progress)
    return await run.run()


class _FileRun:
    """State shared by the stages of one file run."""

    def __init__(
        self,
        config: RunConfig,
        source: FileSource,
        encoder: Encoder,
        stop: asyncio.Event,
        progress: bool,
    ) -> None:
        self.config = config
        self.source = source
        self.encoder = encoder
        self.stop = stop
        self.worker = EncoderWorker(encoder)
        self.counters = Counters(expected=source.info.frames)
        self.bar = ProgressBar(self.counters) if progress else None
        self.sampler = Sampler(config.analysis.analyze_fps)
        self.schedule = CaptionSchedule(config.captions)
        self.captioner = TagCaptioner()
        self.done = asyncio.Event()

    async def run(self) -> RunSummary:
        started = time.monotonic()
        try:
            analyzer = Analyzer(await self._vocabulary(), self.config.analysis.top_k)
            await self._run_stages(analyzer)
        finally:
            self.worker.close()
        return RunSummary(
            frames=self.counters.written,
            analysed=self.counters.analysed,
            captions=self.counters.captions,
            wall_s=time.monotonic() - started,
            interrupted=self.stop.is_set() and not self.source.ended,
            incomplete=str(self.source.incomplete) if self.source.incomplete else None,
            random_weights=self.encoder.info.random_weights,
            loop_lag_max_s=self.counters.loop_lag_max_s,
        )

    async def _vocabulary(self) -> Vocabulary | None:
        if not self.encoder.has_text:
            log.warning(
                "%s has no text tower: no zero-shot tags, scene scores only",
                self.encoder.info.model,
            )
            return None
        analysis = self.config.analysis
        labels = analysis.labels or default_labels()
        text = await cached_text_embeddings(
            analysis.text_cache,
            self.encoder.info,
            prompts(labels, analysis.prompt),
            self.worker.embed_text,
        )
        return Vocabulary(labels, text, getattr(self.encoder, "logit_scale", 100.0))

    async def _run_stages(self, analyzer: Analyzer) -> None:
        cap = self.config.queue_frames
        batch = self.config.analysis.batch
        frames: Channel[Frame] = Channel(cap, name="frames")
        sampled: Channel[tuple[Frame, asyncio.Future]] = Channel(
            batch.max_batch * 2, name="sampled"
        )
        batches: Channel[list] = Channel(2, name="batches")
        outgoing: Channel[tuple[Frame, asyncio.Future]] = Channel(cap, name="outgoing")
        outputs = Outputs.open(self.config.outputs, self.source, self.encoder.info)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.source.run(frames, self.stop))
            tg.create_task(self._route(frames, sampled, outgoing))
            tg.create_task(batch_items(sampled, batches, batch))
            tg.create_task(self._analyse(batches, analyzer))
            tg.create_task(self._deliver(outgoing, outputs))
            tg.create_task(self._watch())

    async def _route(self, inbox: Channel[Frame], sampled: Channel, outgoing: Channel) -> None:
        """Send every frame out, and sampled ones to analysis; each frame carries the future of
        the analysis that covers it (its own when sampled, else the previous sampled frame's)."""
        loop = asyncio.get_running_loop()
        covering: asyncio.Future | None = None
        try:
            async for frame in inbox:
                self.counters.decoded += 1
                # The first frame of a stream is always sampled, so `covering` is set from then on.
                if self.sampler.take(frame.stream, frame.pts):
                    covering = loop.create_future()
                    await sampled.put((frame, covering))
                await outgoing.put((frame, covering))
        finally:
            await sampled.close()
            await outgoing.close()

    async def _analyse(self, batches: Channel[list], analyzer: Analyzer) -> None:
        async for batch in batches:
            embeddings = await self.worker.embed([frame.image for frame, _ in batch])
            for (frame, future), embedding in zip(batch, embeddings, strict=True):
                annotation = analyzer.analyze(frame.stream, frame.index, frame.pts, embedding)
                caption = None
                if self.schedule.due(annotation):
                    analyzer.set_reference(frame.stream, embedding)
                    caption = self.captioner.caption(annotation)
                self.counters.analysed += 1
                future.set_result(Analysis(annotation, caption))

    async def _deliver(self, inbox: Channel, outputs: Outputs) -> None:
        """Overlay and write every frame in order, on one writer thread."""
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
        loop = asyncio.get_running_loop()
        current: Analysis | None = None
        caption: Caption | None = None
        try:
            async for frame, future in inbox:
                analysis = await future
                if analysis is not current:
                    current = analysis
                    outputs.record_analysis(analysis.annotation)
                    if analysis.caption is not None:
                        caption = analysis.caption
                        outputs.record_caption(caption)
                        self.counters.captions += 1
                await loop.run_in_executor(
                    writer, outputs.write_frame, frame, analysis.annotation, caption
                )
                self.counters.written += 1
        finally:
            # Closing runs on the writer thread after any write in flight, and is waited for
            # here without awaiting, so even a cancelled run leaves finished files.
            writer.submit(outputs.close).result()
            writer.shutdown(wait=True)
            self.done.set()

    async def _watch(self) -> None:
        """Progress bar and event-loop lag: a loop blocked for long is a bug to find."""
        period = 0.1
        last_draw = 0.0
        while not self.done.is_set():
            before = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), period)
            lag = time.monotonic() - before - period
            self.counters.loop_lag_max_s = max(self.counters.loop_lag_max_s, lag)
            if self.bar and time.monotonic() - last_draw >= 0.25:
                last_draw = time.monotonic()
                self.bar.update()
        if self.bar:
            self.bar.update(final=True)
