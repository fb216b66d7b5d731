"""What the live benchmarks share: an encoder with random weights and a server of patterns."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness.rtsp import SYSTEM_PYTHON, RtspServer  # noqa: E402
from encoders import Encoder, create_encoder  # noqa: E402


def random_encoder(spec: str) -> Encoder:
    """`kind[:model]` (clip defaults to the tiny test model) with random weights, on the CPU."""
    kind, _, model = spec.partition(":")
    return create_encoder(kind, model or ("tiny" if kind == "clip" else None),
                          weights="random", device="cpu")  # fmt: skip


def pattern_server(streams: int, size: str) -> tuple[RtspServer, list[str]]:
    """A started RTSP server with live test patterns at /cam1 … /camN, and those names."""
    names = [f"cam{i + 1}" for i in range(streams)]
    server = RtspServer(SYSTEM_PYTHON, {n: f"pattern:{size}" for n in names})
    server.start()
    return server, names


def abba(first: str, second: str, rounds: int) -> list[str]:
    """The order of segments for two conditions, alternating which goes first each round
    (A B B A A B ...), so a drift of the machine over the benchmark cancels out."""
    order: list[str] = []
    for r in range(rounds):
        order += [first, second] if r % 2 == 0 else [second, first]
    return order


def mean(rows: list[tuple], k: int) -> float:
    """The mean of column `k` over per-segment result rows."""
    return sum(row[k] for row in rows) / len(rows)
