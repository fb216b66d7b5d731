"""Speed paths of the Encoder on the CPU: options, torch.compile and its fallback, the batch cap
after a CUDA out-of-memory split, and the reusable host staging buffers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import encoders
from encoders.acceleration import Acceleration
from encoders.preprocess import HostStaging, split_images

CPU = torch.device("cpu")


def _tiny(precision: str = "fp32") -> encoders.ClipEncoder:
    return encoders.create_clip_encoder("tiny", "cpu", weights="random", precision=precision)


# -- options -----------------------------------------------------------------------------------


def test_graphs_default_on_cuda_only() -> None:
    auto = Acceleration()
    assert auto.wants_graphs(torch.device("cuda")) and not auto.wants_graphs(CPU)
    assert Acceleration(cuda_graphs=True).wants_graphs(CPU)
    assert not Acceleration(cuda_graphs=False).wants_graphs(torch.device("cuda"))
    assert not auto.compile


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"graph_sizes": (4, 1)}, "strictly ascending"),
        ({"graph_sizes": (0,)}, "positive ints"),
        ({"cuda_graphs": "yes"}, "cuda_graphs must be None, True or False"),
    ],
)
def test_bad_options_are_rejected(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        Acceleration(**kwargs)


def test_cuda_graphs_asked_for_on_a_cpu_say_they_do_nothing(caplog, video_frames) -> None:
    encoder = _tiny()
    expected = encoder.embed(video_frames[0])
    with caplog.at_level(logging.WARNING, logger="encoders"):
        encoder.accelerate(Acceleration(cuda_graphs=True))
    assert any("does nothing here" in r.getMessage() for r in caplog.records)
    assert encoder.info.speedups == "eager" and encoder.acceleration.cuda_graphs is True
    torch.testing.assert_close(encoder.embed(video_frames[0]), expected)


def test_default_options_on_a_cpu_are_quiet_and_eager(caplog) -> None:
    encoder = _tiny()
    caplog.clear()  # the random-weights warning of the build
    with caplog.at_level(logging.WARNING, logger="encoders"):
        encoder.accelerate(Acceleration())
    assert not caplog.records and encoder.info.speedups == "eager"


# -- torch.compile -----------------------------------------------------------------------------


def test_compiled_forward_gives_the_eager_embeddings(video_frames) -> None:
    encoder = _tiny()
    frames = np.stack(video_frames[:2])
    expected = encoder.encode(frames)
    # The "eager" backend traces the forward with dynamo (the part that fails on odd models)
    # without generating code, so this stays fast on a CPU.
    encoder.accelerate(Acceleration(compile=True, compile_backend="eager"))
    got = encoder.encode(frames)
    assert encoder.info.speedups == "compile"
    torch.testing.assert_close(got.tokens, expected.tokens)
    torch.testing.assert_close(got.embeddings, expected.embeddings)


@pytest.mark.parametrize("static", [True, False])
def test_static_compiling_specialises_each_batch_size(static) -> None:
    """Under CUDA graphs every batch is padded to a few sizes, so each is compiled for its own
    shape; left to torch, a second size turns the forward shape-generic (slower per batch)."""
    from encoders.acceleration import CompiledForward

    graphs: list[list] = []  # per compiled graph: its inputs' shapes (a size as itself)

    def backend(graph, example_inputs):  # a dynamo backend that records what it was given
        graphs.append([tuple(t.shape) if isinstance(t, torch.Tensor) else t
                       for t in example_inputs])  # fmt: skip
        return graph.forward

    torch._dynamo.reset()
    forward = CompiledForward(lambda x: (x * 2 + 1,), backend, None, static=static)
    for batch in (1, 4, 16):
        (out,) = forward(torch.ones(batch, 3))
        torch.testing.assert_close(out, torch.full((batch, 3), 3.0))
    assert forward.active
    if static:
        assert graphs == [[(1, 3)], [(4, 3)], [(16, 3)]]
    else:  # after the second size one shape-generic graph serves every later size
        assert len(graphs) == 2 and graphs[0] == [(1, 3)]
        assert any(not isinstance(i, tuple) or not all(isinstance(d, int) for d in i)
                   for i in graphs[1])  # fmt: skip


def test_a_compiled_encoder_goes_with_its_last_reference(
    video_frames, freed_with_last_reference
) -> None:
    # torch.compile is given the forward's function and the encoder weakly, not the bound
    # method the encoder would hold in a cycle. "eager": traced by dynamo, nothing to build.
    torch._dynamo.reset()
    held = [_tiny()]
    expected = held[0].embed(video_frames[:2])
    held[0].accelerate(Acceleration(compile=True, compile_backend="eager"))
    torch.testing.assert_close(held[0].embed(video_frames[:2]), expected)
    assert held[0].info.speedups == "compile"
    assert freed_with_last_reference(held)


def test_compile_failure_falls_back_to_eager_once(monkeypatch, caplog, video_frames) -> None:
    compiled_calls = []

    def broken_compile(fn, **kwargs):
        def compiled(encoder, pixels):  # what is compiled: the forward's function
            compiled_calls.append(len(pixels))
            raise RuntimeError("inductor: no working C++ compiler found (injected)")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    encoder = _tiny()
    expected = encoder.embed(video_frames[:2])
    encoder.accelerate(Acceleration(compile=True))
    with caplog.at_level(logging.WARNING, logger="encoders"):
        torch.testing.assert_close(encoder.embed(video_frames[:2]), expected)
        torch.testing.assert_close(encoder.embed(video_frames[:2]), expected)
    assert compiled_calls == [2]  # tried once, then eager for good
    messages = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(messages) == 1 and "injected" in messages[0] and "--compile" in messages[0]
    assert encoder.info.speedups == "eager"


def test_out_of_memory_in_a_compiled_forward_still_splits_the_batch(
    monkeypatch, video_frames
) -> None:
    seen = []

    def compile_that_runs_out_of_memory(fn, **kwargs):
        def compiled(encoder, pixels):  # what is compiled: the forward's function
            seen.append(len(pixels))
            if len(pixels) > 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
            return fn(encoder, pixels)

        return compiled

    monkeypatch.setattr(torch, "compile", compile_that_runs_out_of_memory)
    encoder = _tiny()
    expected = encoder.embed(video_frames[:2])
    encoder.accelerate(Acceleration(compile=True))
    torch.testing.assert_close(encoder.embed(video_frames[:2]), expected)
    assert seen == [2, 1, 1] and encoder.info.speedups == "compile"


# -- the batch cap after an out-of-memory split --------------------------------------------------


def _oom_above(encoder, monkeypatch, limit: int) -> list[int]:
    """The image forward raises CUDA OOM for batches above `limit`; returns the batch sizes."""
    calls: list[int] = []
    forward = encoder.module.encode_image

    def flaky(pixels, *args, **kwargs):
        calls.append(len(pixels))
        if len(pixels) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return forward(pixels, *args, **kwargs)

    monkeypatch.setattr(encoder.module, "encode_image", flaky)
    return calls


def test_later_batches_are_capped_at_the_size_that_worked(
    monkeypatch, caplog, video_frames
) -> None:
    encoder = _tiny()
    frames = np.stack([*video_frames, video_frames[0]])  # 5 frames of one size
    expected = encoder.embed(frames)
    calls = _oom_above(encoder, monkeypatch, 2)
    with caplog.at_level(logging.WARNING, logger="encoders"):
        torch.testing.assert_close(encoder.embed(frames), expected)
    assert calls == [5, 2, 3, 1, 2]  # 5 OOM -> 2 + 3; 3 OOM -> 1 + 2
    assert encoder.batch_limit == 2
    assert any("pieces of at most 2 images" in r.getMessage() for r in caplog.records)
    calls.clear()
    torch.testing.assert_close(encoder.embed(frames), expected)
    assert calls == [2, 2, 1]  # no out-of-memory attempt first
    assert encoder.device == CPU  # a split is not a fallback


def test_no_cap_without_out_of_memory(video_frames) -> None:
    encoder = _tiny()
    encoder.embed(np.stack(video_frames))
    assert encoder.batch_limit is None


def test_cpu_fallback_clears_the_cap(monkeypatch, video_frames) -> None:
    encoder = _tiny("fp16")  # fp16 stands in for the GPU, as in test_encoders.py
    calls: list[int] = []
    forward = encoder.module.encode_image

    def flaky(pixels, *args, **kwargs):
        calls.append(len(pixels))
        if pixels.dtype == torch.float16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return forward(pixels, *args, **kwargs)

    monkeypatch.setattr(encoder.module, "encode_image", flaky)
    encoder.embed(np.stack(video_frames[:2]))
    assert encoder.device == CPU and encoder.batch_limit is None
    calls.clear()
    encoder.embed(np.stack(video_frames[:4]))
    assert calls == [4]


# -- host staging --------------------------------------------------------------------------------


def test_staging_reuses_a_buffer_once_its_batch_was_uploaded() -> None:
    staging = HostStaging(CPU)
    first = staging.take((2, 8, 8, 3))
    staging.uploaded()
    second = staging.take((1, 8, 8, 3))  # smaller: fits in the same buffer
    assert second.data_ptr() == first.data_ptr() and staging.allocations == 1
    third = staging.take((2, 8, 8, 3))  # the first one is taken again: a second buffer
    assert third.data_ptr() != second.data_ptr() and staging.allocations == 2
    assert third.shape == (2, 8, 8, 3) and third.dtype == torch.uint8 and third.is_contiguous()


def test_staging_keeps_a_bounded_number_of_buffers() -> None:
    staging = HostStaging(CPU, max_buffers=2)
    for size in (4, 8, 16, 32):  # each bigger than any free one
        staging.take((size, 2, 2, 3))
        staging.uploaded()
    assert staging.allocations == 4
    assert len(staging._free) <= 2


def test_staged_split_equals_the_plain_one(video_frames) -> None:
    staging = HostStaging(CPU)
    images = [video_frames[0], video_frames[1], video_frames[0][::2, ::2].copy()]
    plain, count = split_images(images, 64)
    staged, staged_count = split_images(images, 64, staging)
    assert count == staged_count == 3
    for a, b in zip(plain, staged, strict=True):
        assert a.indices == b.indices
        assert torch.equal(a.data, b.data)
    array = np.stack(video_frames[:2])
    batch, _ = split_images(array, 64, staging)
    assert torch.equal(batch[0].data, torch.from_numpy(array))
    assert batch[0].data.data_ptr() == array.ctypes.data  # unpinned: used in place, no copy


def test_the_encoder_reuses_its_staging_buffer(video_frames) -> None:
    encoder = _tiny()
    frames = list(video_frames[:2])
    first = encoder.embed(frames)
    for _ in range(3):
        torch.testing.assert_close(encoder.embed(frames), first)
    assert encoder._staging.allocations == 1
