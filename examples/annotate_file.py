"""Annotate a video file: MP4 with overlays, subtitles and JSON Lines.

    python examples/annotate_file.py [INPUT] [OUTPUT_DIR]

Without INPUT (or with "") it uses the sample clip. Weights: pretrained CLIP ViT-B/32 when
available, else random (labelled on the video).
"""

import asyncio
import sys
from pathlib import Path

from streamer import AnalysisConfig, EncoderChoice, OutputConfig, RunConfig, run_pipeline
from streamer.core.samples import export_cache_dir, sample_clip, text_cache_dir

source = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else str(sample_clip())
out = Path(sys.argv[2] if len(sys.argv) > 2 else "out")
out.mkdir(parents=True, exist_ok=True)
config = RunConfig(
    input=source,
    outputs=OutputConfig(
        video=str(out / "annotated.mp4"),
        srt=str(out / "annotated.srt"),
        vtt=str(out / "annotated.vtt"),
        jsonl=str(out / "annotated.jsonl"),
    ),
    # the command line's caches: the model converted for the CPU and the labels embedded once
    encoder=EncoderChoice("clip", "ViT-B/32", weights="auto", export_cache=str(export_cache_dir())),
    analysis=AnalysisConfig(text_cache=str(text_cache_dir())),
)
summary = asyncio.run(run_pipeline(config, progress=True))
print(f"{summary.frames} frames, {summary.analysed} analysed, {summary.fps:.1f} fps -> {out}/")
