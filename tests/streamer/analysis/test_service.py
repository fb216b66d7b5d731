"""The in-process encoder service: lanes, fairness, batching, results, text, load, closing.

The model is the tiny real CLIP (random weights), so every embedding can be checked against the
encoder called directly.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from streamer.analysis.service import FILE_LANE, EncodedBatch, LocalEncoderService
from streamer.core.batcher import BatchPolicy
from streamer.core.channel import ChannelClosed

SLOW = BatchPolicy(max_batch=4, max_wait_ms=60_000)  # only a full batch or the end flushes


def _image(value: int) -> np.ndarray:
    """A 48×64 frame, distinct per value (so its embedding is too)."""
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, : 4 + value % 60] = (value * 37) % 256
    image[::2, :, 1] = (value * 11) % 256
    return image


async def _serve(
    service: LocalEncoderService, feed: Callable[[], Awaitable[None]]
) -> list[EncodedBatch]:
    """Run the service and read its results while `feed` submits (and closes its lanes)."""

    async def read() -> list[EncodedBatch]:
        return [batch async for batch in service.results()]

    async with asyncio.TaskGroup() as tg:
        tg.create_task(service.run())
        results = tg.create_task(read())
        await feed()
    return results.result()


@pytest.fixture
def service(tiny_encoder):
    made: list[LocalEncoderService] = []

    def make(policy: BatchPolicy = SLOW) -> LocalEncoderService:
        made.append(LocalEncoderService(tiny_encoder, policy))
        return made[-1]

    yield make
    for one in made:
        one.close()


async def test_lanes_are_taken_in_turn_so_no_stream_starves_another(service) -> None:
    svc = service()
    svc.open_lane("a", live=False)
    svc.open_lane("b", live=False)

    async def feed() -> None:
        for i in range(6):
            await svc.submit("a", _image(i), f"a{i}")
        for i in range(2):
            await svc.submit("b", _image(10 + i), f"b{i}")
        svc.close_lane("a")
        svc.close_lane("b")

    # Everything is queued before the batcher's first turn: b's two frames go in the first
    # batch beside a's first two, not after all of a's.
    batches = await asyncio.wait_for(_serve(svc, feed), 30)
    assert [list(b.items) for b in batches] == [["a0", "b0", "a1", "b1"], ["a2", "a3", "a4", "a5"]]


async def test_a_live_lane_keeps_the_newest_frame_and_counts_the_ones_it_dropped(service) -> None:
    svc = service()
    svc.open_lane("cam", live=True)
    for i in range(3):  # faster than anyone takes them
        await asyncio.wait_for(svc.submit("cam", _image(i), i), 1)  # never waits
    assert svc.dropped("cam") == 2

    async def feed() -> None:
        svc.close_lane("cam")

    batches = await asyncio.wait_for(_serve(svc, feed), 30)
    assert [list(b.items) for b in batches] == [[2]]
    lane = svc.load().lanes["cam"]
    assert (lane.live, lane.dropped, lane.queued, lane.closed) == (True, 2, 0, True)
    assert svc.load().dropped == 2


async def test_a_full_file_lane_makes_its_stream_wait_and_loses_nothing(service) -> None:
    svc = service()
    svc.open_lane("file", live=False)
    for i in range(FILE_LANE):
        await asyncio.wait_for(svc.submit("file", _image(i), i), 1)
    assert svc.load().lanes["file"].queued == FILE_LANE
    blocked = asyncio.create_task(svc.submit("file", _image(FILE_LANE), FILE_LANE))
    await asyncio.sleep(0.2)
    assert not blocked.done()  # nobody takes from the lane yet: the producer waits

    async def feed() -> None:
        await blocked  # the batcher makes room
        svc.close_lane("file")

    batches = await asyncio.wait_for(_serve(svc, feed), 30)
    assert [item for b in batches for item in b.items] == list(range(FILE_LANE + 1))
    assert svc.dropped("file") == 0


async def test_a_batch_is_sent_when_full_without_waiting_for_its_deadline(service) -> None:
    svc = service(BatchPolicy(max_batch=3, max_wait_ms=3_600_000))
    svc.open_lane("a", live=False)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(svc.run())
        results = svc.results()
        for i in range(3):
            await svc.submit("a", _image(i), i)
        first = await asyncio.wait_for(anext(results), 30)  # an hour's deadline: size flushed it
        assert list(first.items) == [0, 1, 2]
        svc.close_lane("a")
        assert [b async for b in results] == []


@pytest.mark.parametrize("hurried", [False, True], ids=["deadline", "hurry"])
async def test_a_partial_batch_is_sent_at_its_deadline_or_when_hurried(service, hurried) -> None:
    # Hurried: a minute's deadline, so only `hurry` (a file's writer waiting) can send it.
    svc = service(SLOW if hurried else BatchPolicy(max_batch=8, max_wait_ms=30))
    svc.open_lane("a", live=False)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(svc.run())
        results = svc.results()
        await svc.submit("a", _image(0), 0)
        await svc.submit("a", _image(1), 1)
        if hurried:
            await asyncio.sleep(0.05)  # both taken; the batcher waits for more
            svc.hurry()
        first = await asyncio.wait_for(anext(results), 30)  # the lane stays open
        assert list(first.items) == [0, 1]
        svc.close_lane("a")
        assert [b async for b in results] == []


async def test_each_item_comes_back_with_the_embedding_of_its_own_image(
    service, tiny_encoder
) -> None:
    svc = service()
    svc.open_lane("a", live=False)
    svc.open_lane("b", live=False)
    images = {(lane, i): _image(i + (20 if lane == "b" else 0)) for lane in "ab" for i in range(5)}

    async def feed() -> None:
        for i in range(5):
            await svc.submit("a", images[("a", i)], ("a", i))
            await svc.submit("b", images[("b", i)], ("b", i))
        svc.close_lane("a")
        svc.close_lane("b")

    batches = await asyncio.wait_for(_serve(svc, feed), 30)
    pairs = [pair for batch in batches for pair in batch]
    for lane in "ab":
        assert [item for item, _ in pairs if item[0] == lane] == [(lane, i) for i in range(5)]
    keys = [item for item, _ in pairs]
    expected = tiny_encoder.embed([images[k] for k in keys]).numpy()
    got = np.stack([embedding for _, embedding in pairs])
    assert got.dtype == np.float32 and got.shape == (10, 64)
    np.testing.assert_allclose(got, expected, atol=1e-5)


async def test_text_is_embedded_by_the_same_model(service, tiny_encoder) -> None:
    svc = service()
    texts = ["a person at the door", "an empty street"]
    embedded = await asyncio.wait_for(svc.embed_text(texts), 30)
    assert isinstance(embedded, np.ndarray) and embedded.shape == (2, 64)
    np.testing.assert_allclose(embedded, tiny_encoder.embed_text(texts).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)


def test_the_model_card_says_what_the_model_is(service, tiny_encoder) -> None:
    card = service().model
    assert (card.kind, card.name, card.random_weights) == ("clip", "tiny", True)
    assert card.has_text
    assert card.preprocess == tiny_encoder.preprocess_cfg
    assert card.logit_scale == pytest.approx(tiny_encoder.logit_scale)
    assert card.info == tiny_encoder.info


async def test_the_load_report_counts_the_work_done(service) -> None:
    svc = service(BatchPolicy(max_batch=4, max_wait_ms=60_000))
    svc.open_lane("a", live=False)
    assert svc.load().batches == 0 and svc.load().batch_size == 4

    async def feed() -> None:
        for i in range(10):
            await svc.submit("a", _image(i), i)
        svc.close_lane("a")

    batches = await asyncio.wait_for(_serve(svc, feed), 30)
    load = svc.load()
    assert [len(b) for b in batches] == [4, 4, 2]
    assert load.batches == 3 and load.images == 10
    assert load.batch_sizes == dict(collections.Counter(len(b) for b in batches)) == {4: 2, 2: 1}
    assert load.busy_s == pytest.approx(sum(b.seconds for b in batches)) and load.busy_s > 0
    assert load.last_encode_s == batches[-1].seconds
    assert load.queued == 0 and load.batches_waiting == 0 and load.lanes["a"].closed


async def test_encode_times_reach_adaptive_batching(service) -> None:
    # A budget of a nanosecond: any real encode is over it, so the size shrinks.
    policy = BatchPolicy(
        max_batch=8, max_wait_ms=0, adaptive=True, batch_ceiling=8, latency_budget_ms=1e-6
    )
    svc = service(policy)
    svc.open_lane("a", live=False)

    async def feed() -> None:
        for i in range(4):
            await svc.submit("a", _image(i), i)
        svc.close_lane("a")

    batches = await asyncio.wait_for(_serve(svc, feed), 30)
    assert [len(b) for b in batches] == [4]
    assert svc.load().batch_size == 2  # capped at half the slow batch, whatever the wait did


async def test_a_closed_lane_ends_its_results_and_the_last_lane_ends_them_all(service) -> None:
    svc = service(BatchPolicy(max_batch=8, max_wait_ms=20))
    svc.open_lane("a", live=False)
    svc.open_lane("b", live=False)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(svc.run())
        results = svc.results()
        await svc.submit("a", _image(0), "a0")
        svc.close_lane("a")
        with pytest.raises(ChannelClosed):
            await svc.submit("a", _image(1), "a1")
        first = await asyncio.wait_for(anext(results), 30)
        assert list(first.items) == ["a0"]  # what a queued before closing is still encoded
        await asyncio.sleep(0.1)
        assert not runner.done()  # b is open: the service goes on
        await svc.submit("b", _image(2), "b0")
        svc.close_lane("b")
        rest = await asyncio.wait_for(_collect(results), 30)
        assert [list(b.items) for b in rest] == [["b0"]]
    assert runner.done()


async def _collect(results) -> list[EncodedBatch]:
    return [batch async for batch in results]


def _encoder_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("encoder")}


async def test_close_stops_the_thread_and_refuses_more_work(tiny_encoder) -> None:
    before = _encoder_threads()
    svc = LocalEncoderService(tiny_encoder, SLOW)
    await svc.embed_text(["a dog"])
    assert _encoder_threads() - before  # the service's own thread ran the model
    svc.close()
    assert _encoder_threads() == before
    with pytest.raises(RuntimeError, match="encoder service is closed"):
        await svc.embed_text(["a dog"])
    svc.close()  # idempotent


class _Held:
    """The encoder seen through an object of its own, which says on which thread it is freed."""

    def __init__(self, encoder, freed: list[str]) -> None:
        self._encoder, self._freed = encoder, freed

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def __del__(self) -> None:
        self._freed.append(threading.current_thread().name)


async def test_closing_frees_an_owned_model_on_a_thread_of_its_own(tiny_encoder) -> None:
    # Freeing a real model takes tens of milliseconds: the run's files close meanwhile.
    freed: list[str] = []
    owned = LocalEncoderService(_Held(tiny_encoder, freed), SLOW, owned=True)
    await owned.embed_text(["a dog"])
    owned.close()
    for thread in threading.enumerate():  # (it may have ended already)
        if thread.name == "encoder-release":
            await asyncio.to_thread(thread.join, 30)
    assert freed == ["encoder-release"]
    owned.close()  # idempotent: nothing left to free

    lent = _Held(tiny_encoder, freed)  # the caller's: the service only borrowed it
    svc = LocalEncoderService(lent, SLOW)
    svc.close()
    assert freed == ["encoder-release"] and lent.embed_text(["a cat"]).shape[0] == 1


def test_the_interface_loads_no_torch() -> None:
    # A process that only submits frames and reads embeddings (a cluster shard) stays light.
    code = "import sys, streamer.analysis.service; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_a_load_the_run_gave_up_on_stops_before_it_exports(tmp_path) -> None:
    # A run that fails before it needs its model (a bad input) gives up the load it started on
    # a thread; that thread must not go on to export for seconds, a core and the export lock
    # held, in a process that lives on (an application, the test suite).
    from streamer.analysis.loading import abandon, start_local_encoder_service
    from streamer.analysis.worker import EncoderChoice

    pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")
    cache = tmp_path / "exports"
    choice = EncoderChoice("clip", "tiny", weights="random", device="cpu", backend="openvino",
                           export_cache=str(cache))  # fmt: skip
    before = set(threading.enumerate())
    loading = start_local_encoder_service(choice, SLOW)
    (thread,) = [t for t in set(threading.enumerate()) - before if t.name == "encoder-load"]
    abandon(loading)  # the run failed at once
    with pytest.raises(asyncio.CancelledError):
        await loading
    await asyncio.to_thread(thread.join, 120)
    assert not thread.is_alive()
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]
