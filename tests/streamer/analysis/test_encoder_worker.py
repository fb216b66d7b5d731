"""The encoder worker: speed-up choices reach the encoder; the thread embeds and times the model.

How encode times reach adaptive batching: `test_service.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamer.analysis.worker import EncoderChoice, EncoderWorker, load_encoder
from streamer.cli.main import build_parser
from streamer.errors import ConfigError


def test_default_choice_asks_for_graphs_on_cuda_only_and_no_compile() -> None:
    acceleration = EncoderChoice().acceleration
    assert acceleration.cuda_graphs is None and acceleration.compile is False


def test_load_encoder_applies_the_speedups() -> None:
    choice = EncoderChoice("clip", "tiny", weights="random", device="cpu", compile=True,
                           cuda_graphs=False)  # fmt: skip
    encoder = load_encoder(choice)
    assert encoder.acceleration.compile and encoder.info.speedups == "compile"
    assert encoder.acceleration.cuda_graphs is False


async def test_worker_embeds_on_its_thread_and_times_the_model(tiny_encoder) -> None:
    worker = EncoderWorker(tiny_encoder)
    try:
        frames = [np.full((48, 64, 3), i * 40, np.uint8) for i in range(4)]
        embeddings, seconds = await worker.embed(frames)
    finally:
        worker.close()
    assert embeddings.shape == (4, 64) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, tiny_encoder.embed(frames).numpy(), atol=1e-5)
    assert seconds > 0


def _run_config(tmp_path, *flags: str):
    from streamer.cli.run import config_from_args

    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"")
    args = build_parser().parse_args(["run", str(clip), "-o", str(tmp_path / "o.mp4"), *flags])
    return config_from_args(args)


def test_run_flags_reach_the_encoder_choice_and_the_batch_policy(tmp_path) -> None:
    config = _run_config(tmp_path, "--no-cuda-graphs", "--compile", "--adaptive-batch",
                         "--batch-ceiling", "32", "--latency-budget-ms", "150")  # fmt: skip
    assert config.encoder.cuda_graphs is False and config.encoder.compile is True
    batch = config.analysis.batch
    assert (batch.adaptive, batch.batch_ceiling, batch.latency_budget_ms) == (True, 32, 150.0)


def test_run_defaults_leave_graphs_to_the_device(tmp_path) -> None:
    config = _run_config(tmp_path)
    assert config.encoder.cuda_graphs is None and config.encoder.compile is False
    assert config.analysis.batch.adaptive is False


def test_inconsistent_adaptive_flags_are_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="--batch-ceiling 8 must be ≥ --max-batch 16"):
        _run_config(tmp_path, "--adaptive-batch", "--max-batch", "16", "--batch-ceiling", "8")


def test_an_encoder_that_cannot_load_is_a_streamer_error_and_still_the_encoders_one(tmp_path):
    import encoders
    from streamer.errors import ConfigError, ModelError, StreamerError

    with pytest.raises(StreamerError) as unknown:
        load_encoder(EncoderChoice("clip", "ViT-Q/99", weights="random", device="cpu"))
    assert isinstance(unknown.value, ConfigError)  # a bad --model: usage
    assert isinstance(unknown.value, encoders.UnknownEncoderError)  # old `except`s still catch it
    assert unknown.value.exit_code == 2 and "ViT-Q/99" in str(unknown.value)
    assert isinstance(unknown.value.__cause__, encoders.UnknownEncoderError)
    missing = tmp_path / "nothing.pt"
    with pytest.raises(ModelError) as weights:
        load_encoder(EncoderChoice("clip", "tiny", weights=str(missing), device="cpu"))
    assert isinstance(weights.value, encoders.WeightsUnavailableError)
    assert weights.value.exit_code == 1 and str(missing) in str(weights.value)
