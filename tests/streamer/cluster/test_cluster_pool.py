"""The shard's choice of encoder replica, without Ray: least outstanding, ties in turn."""

from __future__ import annotations

import collections

import numpy as np

from streamer.analysis.service import ModelCard
from streamer.cluster.pool import PoolEncoderService
from streamer.core.batcher import BatchPolicy


class _Handle:
    """Stands in for an actor handle: only its identity matters to `_pick`."""

    def __init__(self, name: str) -> None:
        self.name = name


def _service(replicas: int) -> PoolEncoderService:
    handles = [_Handle(f"r{i}") for i in range(replicas)]
    card = ModelCard(info=None, has_text=False, preprocess=None)  # type: ignore[arg-type]
    return PoolEncoderService(handles, card, BatchPolicy(), in_flight=4, caller="shard-a")


async def test_an_idle_pool_is_used_in_turn_not_first_replica_only():
    service = _service(3)
    picks = collections.Counter([(await service._pick()).handle.name for _ in range(30)])
    assert picks == {"r0": 10, "r1": 10, "r2": 10}


async def test_the_replica_with_the_least_outstanding_wins():
    service = _service(3)
    service._replicas[0].outstanding = 8
    service._replicas[1].outstanding = 2
    assert {(await service._pick()).handle.name for _ in range(5)} == {"r2"}


async def test_a_replica_that_is_down_is_passed_over():
    service = _service(2)
    service._replicas[0].up = False
    assert {(await service._pick()).handle.name for _ in range(4)} == {"r1"}


def _clip_service() -> PoolEncoderService:
    from encoders.registry import PreprocessConfig

    cfg = PreprocessConfig(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    card = ModelCard(info=None, has_text=True, preprocess=cfg)  # type: ignore[arg-type]
    return PoolEncoderService([_Handle("r0")], card, BatchPolicy(), in_flight=4, caller="s")


def test_a_full_size_frame_crosses_as_the_encoder_s_input_only():
    """A live frame the decoder did not resize is resized and cropped on its node: 224×224
    cross, not 1280×720."""
    full = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    sent = _clip_service()._crossing(full)
    assert sent.shape == (224, 224, 3) and sent.flags.c_contiguous


def test_a_resized_frame_is_cropped_as_the_encoder_would_crop_it():
    """A frame the decoder resized (224×398) loses the margins the encoder's center crop
    would drop, and nothing else: the replica then has nothing left to resize or crop."""
    resized = np.random.default_rng(1).integers(0, 255, (224, 398, 3), dtype=np.uint8)
    sent = _clip_service()._crossing(resized)
    assert np.array_equal(sent, resized[:, 87 : 87 + 224])  # (398 - 224) / 2 = 87


def test_a_model_without_preprocessing_gets_the_frame_as_it_is():
    frame = np.zeros((100, 50, 3), np.uint8)
    assert _service(1)._crossing(frame) is frame


class _Remote:
    """Stands in for an actor method: `.remote(...)` gives an awaitable, as Ray's does."""

    def __init__(self, call) -> None:
        self.remote = call


async def test_a_query_picture_crosses_as_the_encoder_s_input_and_comes_back_embedded():
    # A search on a cluster run's page: each picture goes to a replica as its own batch of
    # one, at the encoder's input size (any picture size crosses as 224×224).
    sent = []

    async def embed(lane: str, images: np.ndarray):
        sent.append((lane, images.shape))
        return np.full((len(images), 4), len(sent), np.float32), 0.01

    service = _clip_service()
    service._replicas[0].handle.embed = _Remote(embed)
    pictures = [np.zeros((720, 1280, 3), np.uint8), np.zeros((100, 50, 3), np.uint8)]
    embedded = await service.embed_images(pictures)
    assert embedded.tolist() == [[1.0] * 4, [2.0] * 4]
    assert [shape for _, shape in sent] == [(1, 224, 224, 3)] * 2
    assert len({lane for lane, _ in sent}) == 1  # one lane of its own, beside the shards'
