"""RGB only where it is used: the decode plan's pictures, and that the analysis-size path gives
the encoder what its own resize of the full frame gives (real clip, real encoders)."""

from __future__ import annotations

import asyncio
import json

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from live_helpers import FAST, Running

import encoders
from encoders.preprocess import preprocess_frames, resized_shape
from encoders.registry import DINOV2_PREPROCESS, OPENAI_MEAN, OPENAI_STD, PreprocessConfig
from streamer import AnalysisConfig, OutputConfig, RunConfig, run_pipeline
from streamer.core.channel import Channel
from streamer.core.frame import Frame, Picture, PixelsUnavailable
from streamer.core.sampler import Sampler
from streamer.errors import ConfigError
from streamer.sources import open_source
from streamer.sources._pyav import to_rgb, to_rgb_resized
from streamer.sources.options import AnalysisSize, DecodePlan, decode_threads

CPU = torch.device("cpu")
CLIP_224 = PreprocessConfig(224, OPENAI_MEAN, OPENAI_STD)
# Mean |difference| of the normalised model input, small path against the full path. libswscale's
# bicubic lands near 0.02 on the sample clip; a point sampler gives 0.05, swscale's fast
# bilinear 0.12, a one-pixel shift more still.
MAX_MEAN_PIXEL_DIFF = 0.03
MIN_COSINE = 0.999  # per frame, embeddings of the small path against the full path


async def _decode(path, plan: DecodePlan) -> list[Frame]:
    source = open_source(path)
    channel: Channel[Frame] = Channel(4)
    frames = []
    async with asyncio.TaskGroup() as tg:
        tg.create_task(source.run(channel, asyncio.Event(), plan))
        async for frame in channel:
            frames.append(frame)
    return frames


@pytest.mark.parametrize(
    "cfg",
    [
        CLIP_224,
        DINOV2_PREPROCESS,
        PreprocessConfig(336, OPENAI_MEAN, OPENAI_STD, "bilinear"),
        PreprocessConfig(224, OPENAI_MEAN, OPENAI_STD, resize_mode="squash", crop=False),
    ],
    ids=["clip", "dinov2", "clip-336-bilinear", "squash"],
)
def test_analysis_size_is_the_encoders_own_resize(cfg):
    size = AnalysisSize.from_preprocess(cfg)
    assert size.interpolation == cfg.interpolation
    for height, width in [(720, 1280), (1080, 1920), (180, 320), (1280, 720), (480, 640), (99, 99)]:
        assert size.shape(height, width) == resized_shape(height, width, cfg), (height, width)


def test_plan_and_sizes_reject_bad_values():
    with pytest.raises(ConfigError, match="`threads` must be a whole number"):
        DecodePlan(threads=-1)
    with pytest.raises(ConfigError, match="`hwaccel` must be 'cuda' or None"):
        DecodePlan(hwaccel="auto")  # resolved before a plan is made
    with pytest.raises(ConfigError, match="`interpolation` must be one of bicubic, bilinear"):
        AnalysisSize(224, interpolation="lanczos")


def test_decoder_threads_share_the_cores_between_streams():
    assert decode_threads(1, cores=16) == 0  # one stream: FFmpeg's own count, every core
    assert decode_threads(4, cores=16) == 4
    assert decode_threads(32, cores=16) == 1  # more streams than cores: one thread each
    assert decode_threads(2, cores=2) == 1


async def test_a_run_that_draws_nothing_converts_only_the_analysed_frames(sample_clip):
    plan = DecodePlan(
        full_frames=False, analysis=AnalysisSize(224), analyze_fps=2.0, full_analysed=False
    )
    frames = await _decode(sample_clip, plan)
    assert [f.index for f in frames] == list(range(132))  # every frame still delivered

    sampler = Sampler(2.0)
    picked = [f.index for f in frames if sampler.take("bunny", f.pts)]
    made = [f.index for f in frames if f.picture.analysis is not None]
    assert made == picked and len(made) == 11  # the pipeline's own choice, nothing else
    assert all(f.analysis_image.shape == (224, 398, 3) for f in frames if f.index in made)
    assert not any(f.picture.has_full for f in frames)  # no full-size RGB conversion at all

    # A frame the decoder did not convert still gives its pixels when asked, at full size.
    lazy = frames[5]
    image = lazy.image
    assert image.shape == (720, 1280, 3) and image.dtype == np.uint8
    assert lazy.picture.has_full and lazy.image is image  # converted once


async def test_a_run_that_draws_gets_every_frame_full_and_analysed_ones_small_too(small_clip):
    plan = DecodePlan(full_frames=True, analysis=AnalysisSize(224), analyze_fps=2.0)
    frames = await _decode(small_clip, plan)
    assert len(frames) == 50
    assert all(f.picture.has_full and f.image.shape == (180, 320, 3) for f in frames)
    small = [f.index for f in frames if f.picture.analysis is not None]
    assert small == [0, 13, 25, 38]
    assert frames[13].analysis_image.shape == (224, 398, 3)  # upscaled, as the encoder would
    assert frames[1].analysis_image is frames[1].image  # not analysed: the encoder resizes


def test_frames_are_immutable_and_say_when_they_have_no_pixels():
    frame = Frame("s", 0, 0.0, 0.0, Picture(analysis=np.zeros((4, 6, 3), np.uint8)))
    with pytest.raises(AttributeError, match="immutable"):
        frame.index = 3  # type: ignore[misc]
    assert frame.image.shape == (4, 6, 3)  # a worker's frame: its analysis pixels stand in
    with pytest.raises(PixelsUnavailable, match="decoded without its pixels"):
        Frame("s", 1, 0.04, 0.0, Picture()).image  # noqa: B018
    moved = frame.replace(captured=5.0)
    assert moved.captured == 5.0 and moved.picture is frame.picture


def _decoded(path, indices: tuple[int, ...]) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return [f for i, f in enumerate(container.decode(video=0)) if i in indices]


def test_nv12_frames_from_the_gpu_decoder_convert_like_planar_yuv(sample_clip):
    """NVDEC frames reach the host as NV12; the conversions must read them correctly."""
    for planar in _decoded(sample_clip, (0, 90)):
        nv12 = planar.reformat(format="nv12")
        assert nv12.format.name == "nv12"
        difference = np.abs(to_rgb(nv12).astype(int) - to_rgb(planar).astype(int))
        # Re-sampling the chroma into NV12 moves colour edges by a pixel; swapped or misread
        # chroma would be off by tens of levels everywhere.
        assert difference.mean() < 2.0 and np.percentile(difference, 99.9) < 20
        small = to_rgb_resized(nv12, AnalysisSize(224)).astype(int)
        assert np.abs(small - to_rgb_resized(planar, AnalysisSize(224)).astype(int)).mean() < 2.0


def _small_and_full(sample_clip, cfg: PreprocessConfig) -> tuple[list, list]:
    decoded = _decoded(sample_clip, (0, 20, 45, 70, 90, 110, 131))
    size = AnalysisSize.from_preprocess(cfg)
    return [to_rgb_resized(f, size) for f in decoded], [to_rgb(f) for f in decoded]


@pytest.mark.parametrize("cfg", [CLIP_224, DINOV2_PREPROCESS], ids=["clip", "dinov2"])
def test_small_path_gives_the_encoder_the_input_of_its_own_resize(sample_clip, cfg):
    small, full = _small_and_full(sample_clip, cfg)
    ours = preprocess_frames(torch.from_numpy(np.stack(small)), cfg, CPU, torch.float32)
    reference = preprocess_frames(torch.from_numpy(np.stack(full)), cfg, CPU, torch.float32)
    assert ours.shape == reference.shape == (7, 3, 224, 224)
    assert (ours - reference).abs().mean() < MAX_MEAN_PIXEL_DIFF


def test_small_path_embeddings_match_the_full_path_tiny_clip(sample_clip, tiny_encoder):
    small, full = _small_and_full(sample_clip, tiny_encoder.preprocess_cfg)
    cosines = F.cosine_similarity(tiny_encoder.embed(small), tiny_encoder.embed(full), dim=-1)
    assert cosines.min() > MIN_COSINE, cosines


@pytest.mark.slow
def test_small_path_embeddings_match_the_full_path_vit_b32(sample_clip):
    """The real ViT-B/32 architecture (random weights): 224 px input, where resizing matters."""
    encoder = encoders.create_clip_encoder("ViT-B/32", "cpu", weights="random", precision="fp32")
    small, full = _small_and_full(sample_clip, encoder.preprocess_cfg)
    cosines = F.cosine_similarity(encoder.embed(small), encoder.embed(full), dim=-1)
    assert cosines.min() > MIN_COSINE, cosines


def _analyses(path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in lines if r["type"] == "analysis"]


async def test_jsonl_only_run_gives_the_records_of_a_run_that_draws(
    tmp_path, small_clip, tiny_encoder
):
    """Without a video output no frame is converted at full size, and nothing changes."""
    drawn = RunConfig(
        input=str(small_clip),
        outputs=OutputConfig(video=str(tmp_path / "out.mp4"), jsonl=str(tmp_path / "drawn.jsonl")),
        analysis=AnalysisConfig(text_cache=None),
    )
    bare = RunConfig(
        input=str(small_clip),
        outputs=OutputConfig(jsonl=str(tmp_path / "bare.jsonl")),
        analysis=AnalysisConfig(text_cache=None),
    )
    first = await run_pipeline(drawn, encoder=tiny_encoder)
    second = await run_pipeline(bare, encoder=tiny_encoder)
    assert first.frames == second.frames == 50 and second.analysed == 4
    assert _analyses(tmp_path / "bare.jsonl") == _analyses(tmp_path / "drawn.jsonl")


@pytest.mark.integration
async def test_a_live_stream_that_draws_nothing_converts_about_the_analysed_frames(rtsp_server):
    """Live frames are picked on the clock: the decoder expects about `analyze_fps` of them per
    second; any other frame still converts itself if the pipeline picks it after a drop."""
    source = open_source(rtsp_server.url("cam2"), options=FAST)
    plan = DecodePlan(full_frames=False, analysis=AnalysisSize(224), analyze_fps=5.0,
                      full_analysed=False)  # fmt: skip
    async with Running(source, plan=plan) as run:
        await run.until(lambda: len(run.frames) >= 50, 20, "50 frames")
    frames = run.frames
    small = [f for f in frames if f.picture.analysis is not None]
    # Five per second of the clock the frames were decoded on (a connection's first frames
    # arrive at once, so counting frames would not do).
    seconds = frames[-1].captured - frames[0].captured
    assert abs(len(small) - (seconds * 5 + 1)) <= 2, (len(small), seconds)
    assert all(f.analysis_image.shape == (224, 398, 3) for f in small)
    assert not any(f.picture.has_full for f in frames)
    assert frames[-1].image.shape == (180, 320, 3)  # converted now, on first use
