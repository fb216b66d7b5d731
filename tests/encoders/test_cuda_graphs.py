"""CUDA-graph bucketing, padding and fallbacks, on the CPU.

A real CUDA graph needs a GPU. The runner's logic does not: here graphs are "recorded" by
`replay_capture`, which behaves like a CUDA graph where it matters (static input and output
buffers that every replay overwrites in place), around the tiny CLIP's real forward. The real
capture is exercised by the GPU test at the end and by bench/gpu_suite.py on a GPU.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
import torch

import encoders
import encoders.base
from encoders.acceleration import Acceleration
from encoders.cuda_graphs import (
    GRAPH_BATCH_SIZES,
    CapturedGraph,
    GraphRunner,
    bucket_for,
    check_graph_sizes,
    cuda_graphs_unsupported,
    plan_chunks,
)


def replay_capture(forward, static_input, pool):
    """A CUDA graph's contract on the CPU: static buffers, replays overwrite the outputs."""
    outputs = tuple(out.clone() for out in forward(static_input))

    def replay() -> None:
        for out, new in zip(outputs, forward(static_input), strict=True):
            out.copy_(new)

    return CapturedGraph(static_input, outputs, replay)


def failing_capture(forward, static_input, pool):
    raise RuntimeError("operation not permitted when stream is capturing (injected)")


@pytest.fixture(scope="module")
def clip_tiny() -> encoders.ClipEncoder:
    return encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")


def _pixels(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, 64, 64, generator=generator)


# -- bucketing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "bucket"), [(1, 1), (2, 4), (4, 4), (5, 16), (17, 64), (65, 256), (256, 256)]
)
def test_a_batch_goes_to_the_smallest_recorded_size_that_holds_it(count, bucket) -> None:
    assert bucket_for(count, GRAPH_BATCH_SIZES) == bucket


def test_no_bucket_above_the_largest_size() -> None:
    assert bucket_for(257, GRAPH_BATCH_SIZES) is None


@pytest.mark.parametrize(
    ("count", "plan"),
    [
        (3, [(3, 4)]),
        (64, [(64, 64)]),
        (256, [(256, 256)]),
        (300, [(256, 256), (44, 64)]),
        (512, [(256, 256), (256, 256)]),
        (513, [(256, 256), (256, 256), (1, 1)]),
    ],
)
def test_chunks_cover_the_batch_in_order(count, plan) -> None:
    assert plan_chunks(count, GRAPH_BATCH_SIZES) == plan
    assert sum(images for images, _ in plan) == count


@pytest.mark.parametrize("sizes", [(), (0, 4), (4, 1), (1, 1, 4), (1.5,)])
def test_bad_graph_sizes_are_rejected(sizes) -> None:
    with pytest.raises(ValueError, match="graph batch sizes must be"):
        check_graph_sizes(sizes)


def test_cpu_cannot_run_cuda_graphs() -> None:
    assert "need a CUDA device" in cuda_graphs_unsupported(torch.device("cpu"))


# -- the runner --------------------------------------------------------------------------------


def test_padded_replays_give_the_eager_results(clip_tiny) -> None:
    runner = GraphRunner(clip_tiny._forward, (1, 4, 16), capture=replay_capture)
    for count in (3, 1, 4, 20):  # 20 = 16 + 4: two replays
        pixels = _pixels(count, seed=count)
        tokens, pooled = runner(pixels)
        eager_tokens, eager_pooled = clip_tiny._forward(pixels)
        assert tokens.shape == eager_tokens.shape and pooled.shape == (count, 64)
        torch.testing.assert_close(tokens, eager_tokens, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pooled, eager_pooled, rtol=1e-5, atol=1e-5)
    assert runner.captured == [1, 4, 16] and runner.replays == 5 and runner.enabled


def test_results_do_not_change_when_the_graph_is_replayed_again(clip_tiny) -> None:
    # The static outputs are overwritten by every replay: results must be copies.
    runner = GraphRunner(clip_tiny._forward, (4,), capture=replay_capture)
    first = runner(_pixels(4, seed=1))
    kept = tuple(out.clone() for out in first)
    second = runner(_pixels(4, seed=2))
    for out, copy in zip(first, kept, strict=True):
        torch.testing.assert_close(out, copy)
    assert not torch.allclose(second[1], first[1])


def test_capture_failure_falls_back_to_eager_with_one_warning(clip_tiny, caplog) -> None:
    runner = GraphRunner(clip_tiny._forward, (1, 4), capture=failing_capture)
    with caplog.at_level(logging.WARNING, logger="encoders"):
        for count in (3, 1, 4):
            pixels = _pixels(count)
            torch.testing.assert_close(runner(pixels)[1], clip_tiny._forward(pixels)[1])
    warnings = [r.getMessage() for r in caplog.records if "CUDA graph capture failed" in r.msg]
    assert len(warnings) == 1 and "injected" in warnings[0] and "--no-cuda-graphs" in warnings[0]
    assert not runner.enabled and runner.captured == []


def test_a_failure_midway_runs_the_rest_of_the_batch_eagerly(clip_tiny) -> None:
    calls = []

    def fail_for_the_second_size(forward, static_input, pool):
        calls.append(len(static_input))
        if len(calls) > 1:
            raise RuntimeError("out of graph memory (injected)")
        return replay_capture(forward, static_input, pool)

    runner = GraphRunner(clip_tiny._forward, (1, 4, 16), capture=fail_for_the_second_size)
    pixels = _pixels(19)  # 16 (recorded) + 3 padded to 4 (recording fails): eager
    torch.testing.assert_close(runner(pixels)[1], clip_tiny._forward(pixels)[1])
    assert calls == [16, 4] and not runner.enabled


def test_out_of_memory_while_recording_is_not_a_graph_failure(clip_tiny) -> None:
    def out_of_memory_for_16(forward, static_input, pool):
        if len(static_input) == 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return replay_capture(forward, static_input, pool)

    runner = GraphRunner(clip_tiny._forward, (1, 4, 16), capture=out_of_memory_for_16)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        runner(_pixels(9))
    pixels = _pixels(3)  # the caller's smaller pieces still replay graphs
    torch.testing.assert_close(runner(pixels)[1], clip_tiny._forward(pixels)[1])
    assert runner.enabled and runner.captured == [4]


# -- through the encoder -----------------------------------------------------------------------


@pytest.fixture
def fake_cuda_graphs(monkeypatch):
    """Let `accelerate` install graphs on the CPU, recorded by `replay_capture`."""
    monkeypatch.setattr(encoders.base, "cuda_graphs_unsupported", lambda device: None)
    runner = functools.partial(GraphRunner, capture=replay_capture)
    monkeypatch.setattr(encoders.base, "GraphRunner", runner)


def test_encoder_with_graphs_matches_eager_on_real_frames(fake_cuda_graphs, video_frames) -> None:
    encoder = encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")
    frames = np.stack(video_frames[:3])
    expected = encoder.encode(frames)
    encoder.accelerate(Acceleration(cuda_graphs=True, graph_sizes=(1, 4)))
    got = encoder.encode(frames)
    torch.testing.assert_close(got.tokens, expected.tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.embeddings, expected.embeddings, rtol=1e-5, atol=1e-5)
    assert encoder.info.speedups == "cuda-graphs"
    assert encoder._graphs.captured == [4]


def test_warm_up_records_the_buckets_before_frames_arrive(fake_cuda_graphs) -> None:
    encoder = encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")
    encoder.accelerate(Acceleration(cuda_graphs=True, graph_sizes=(1, 4, 16)))
    encoder.warm_up([1, 3, 8])
    assert encoder._graphs.captured == [1, 4, 16]


@pytest.mark.parametrize("compile_too", [False, True])
def test_an_encoder_with_graphs_goes_with_its_last_reference(
    fake_cuda_graphs, video_frames, freed_with_last_reference, compile_too
) -> None:
    # The runner holds the encoder's forward weakly: dropping the encoder frees its model
    # (and, on a GPU, the graphs' memory) without waiting for the garbage collector.
    held = [encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")]
    held[0].accelerate(Acceleration(cuda_graphs=True, graph_sizes=(1, 4),
                                    compile=compile_too, compile_backend="eager"))  # fmt: skip
    held[0].encode(np.stack(video_frames[:3]))
    assert held[0]._graphs.captured == [4]
    assert freed_with_last_reference(held)


def test_encoder_capture_failure_reports_eager(monkeypatch, caplog, video_frames) -> None:
    monkeypatch.setattr(encoders.base, "cuda_graphs_unsupported", lambda device: None)
    failing = functools.partial(GraphRunner, capture=failing_capture)
    monkeypatch.setattr(encoders.base, "GraphRunner", failing)
    encoder = encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")
    expected = encoder.embed(video_frames[:2])
    encoder.accelerate(Acceleration(cuda_graphs=True))
    assert encoder.info.speedups == "cuda-graphs"  # asked for; not tried yet
    with caplog.at_level(logging.WARNING, logger="encoders"):
        torch.testing.assert_close(encoder.embed(video_frames[:2]), expected)
        torch.testing.assert_close(encoder.embed(video_frames[:2]), expected)
    assert sum("CUDA graph capture failed" in r.msg for r in caplog.records) == 1
    assert encoder.info.speedups == "eager"


def test_encoder_splits_when_recording_runs_out_of_memory(monkeypatch, video_frames) -> None:
    def out_of_memory_for_4(forward, static_input, pool):
        if len(static_input) == 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return replay_capture(forward, static_input, pool)

    monkeypatch.setattr(encoders.base, "cuda_graphs_unsupported", lambda device: None)
    runner = functools.partial(GraphRunner, capture=out_of_memory_for_4)
    monkeypatch.setattr(encoders.base, "GraphRunner", runner)
    encoder = encoders.create_clip_encoder("tiny", "cpu", weights="random", precision="fp32")
    frames = np.stack(video_frames[:3])
    expected = encoder.embed(frames)
    encoder.accelerate(Acceleration(cuda_graphs=True, graph_sizes=(1, 4)))
    torch.testing.assert_close(encoder.embed(frames), expected, rtol=1e-5, atol=1e-5)
    # 3 -> out of memory recording 4 -> halves 1 (graph) and 2 (eager: its bucket 4 > limit 2)
    assert encoder.batch_limit == 2 and encoder._graphs.captured == [1]
    assert encoder.info.speedups == "cuda-graphs"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_graphs_match_eager(video_frames, freed_with_last_reference) -> None:
    held = [encoders.create_clip_encoder("tiny", "cuda", weights="random", precision="fp16")]
    expected = held[0].embed(video_frames[:3])
    held[0].accelerate(Acceleration())
    got = held[0].embed(video_frames[:3])
    assert held[0].info.speedups == "cuda-graphs" and held[0]._graphs.captured == [4]
    cosines = torch.nn.functional.cosine_similarity(got, expected)
    assert cosines.min() > 0.999
    assert freed_with_last_reference(held)  # real graphs hold no reference to the encoder
