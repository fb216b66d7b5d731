"""Shared fixtures for the encoder tests: real video frames and small real encoders.

The frames come from the sample clip (`sample_clip` in tests/conftest.py).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

import encoders

FRAME_INDICES = (0, 45, 90, 131)  # spread over the clip: different scenes


@pytest.fixture(scope="session")
def video_frames(sample_clip: Path) -> list[np.ndarray]:
    """Four decoded 720x1280x3 uint8 RGB frames from different scenes of the clip."""
    frames = []
    with av.open(str(sample_clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in FRAME_INDICES:
                frames.append(frame.to_ndarray(format="rgb24"))
    assert len(frames) == len(FRAME_INDICES)
    return frames


@pytest.fixture(scope="session")
def held_out_clip() -> Path:
    """Another real clip of the sample's wheel (bikes, 1280×720 H.264): frames int8 was not
    calibrated on (it calibrates on the sample clip)."""
    from streamer.core.samples import sample_clip

    return sample_clip(Path(__file__).resolve().parents[2] / ".cache" / "samples", "bikes.mp4")


@pytest.fixture(scope="session")
def tiny_clip() -> encoders.ClipEncoder:
    """The registered tiny CLIP (real open_clip code and tokenizer, random weights), CPU fp32."""
    return encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")


@pytest.fixture(scope="session")
def default_encoder() -> encoders.DefaultEncoder:
    return encoders.create_default_encoder("cpu", precision="fp32")


@pytest.fixture(scope="session")
def dinov2_small() -> encoders.Dinov2Encoder:
    """DINOv2 small with its real architecture and random weights, CPU fp32."""
    return encoders.create_dinov2_encoder("small", "cpu", weights="random", precision="fp32")


@pytest.fixture
def freed_with_last_reference() -> Callable[[list], bool]:
    """Takes the one encoder out of a list (its only reference) and drops it with the garbage
    collector off: were it and its model freed at once? A run hands its model to a thread to
    be freed while the files close, and a GPU user's `del encoder` frees the memory: neither
    waits for a collection, so nothing may hold the encoder in a cycle."""

    def drop(holder: list) -> bool:
        encoder = holder.pop()
        gone, model = weakref.ref(encoder), weakref.ref(encoder._module)
        gc.collect()  # frames and cycles left by the imports and the build may still see it
        gc.disable()
        try:
            del encoder
            return gone() is None and model() is None
        finally:
            gc.enable()

    return drop
