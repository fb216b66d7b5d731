"""One encoder called from several threads (two runs lent one encoder, a user's thread pool):
each call gets its own results. A forward keeps state between its steps (the CLIP token hook's
capture, a backend's single infer request), so calls take turns."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import encoders
from encoders.exported import ExportedEncoder


def _frames(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (2, 72, 96, 3), dtype=np.uint8)


def _hammer(encoder, rounds: int = 40) -> list[str]:
    """Two threads, each encoding its own frames `rounds` times: what went wrong."""
    inputs = [_frames(1), _frames(2)]
    expected = [encoder.encode(x) for x in inputs]
    problems: list[str] = []
    start = threading.Barrier(2)

    def work(i: int) -> None:
        start.wait()
        for _ in range(rounds):
            try:
                got = encoder.encode(inputs[i])
            except Exception as exc:  # what the other thread's call broke
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            for name in ("tokens", "embeddings"):
                if not np.array_equal(
                    getattr(got, name).numpy(), getattr(expected[i], name).numpy()
                ):
                    problems.append(f"thread {i}: other {name}")

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return problems


def test_a_torch_encoder_gives_each_thread_its_own_results() -> None:
    encoder = encoders.create_encoder("clip", "tiny", weights="random", device="cpu")
    assert _hammer(encoder) == []


def test_an_exported_encoder_gives_each_thread_its_own_results(tmp_path) -> None:
    pytest.importorskip("openvino")

    def create():
        return encoders.create_encoder("clip", "tiny", weights="random", backend="openvino",
                                       export_cache=tmp_path)  # fmt: skip

    create()
    opened = create()  # from the cache: an ExportedEncoder on one OpenVINO infer request
    assert isinstance(opened, ExportedEncoder)
    assert _hammer(opened) == []
