"""One run over many machines: the same pipeline on a Ray cluster (`streamer run --cluster`).

Shards (one or more actors per node) run the pipeline on their streams, so full frames never
leave the node that decoded them; a pool of encoder replicas serves every shard through the
encoder-service seam (docs/design.md §3). Ray is the `cluster` extra:
`pip install ".[cluster]"` in a checkout, or `pip install ray`.

Example:
    >>> import asyncio
    >>> from streamer import OutputConfig, RunConfig
    >>> from streamer.cluster import ClusterConfig, run_cluster
    >>> config = RunConfig(input=("a.mp4", "b.mp4"), cluster=ClusterConfig("auto"),
    ...                    outputs=OutputConfig(jsonl="out/{stream}.jsonl"))
    >>> summary = asyncio.run(run_cluster(config))  # doctest: +SKIP

`import streamer.cluster` and its options load neither Ray nor torch: every name loads on first
use (PEP 562), and `connect` imports Ray only when called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name → the module that defines it (each loads on first use)
_EXPORTS = {
    "ClusterConfig": "streamer.cluster.options",
    "ClusterInfo": "streamer.cluster.session",
    "NodeInfo": "streamer.cluster.session",
    "Pin": "streamer.cluster.options",
    "connect": "streamer.cluster.session",
    "nodes": "streamer.cluster.session",
    "run_cluster": "streamer.cluster.driver",
}

__all__ = ["ClusterConfig", "ClusterInfo", "NodeInfo", "Pin", "connect", "nodes", "run_cluster"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamer.cluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from streamer.cluster.driver import run_cluster
    from streamer.cluster.options import ClusterConfig, Pin
    from streamer.cluster.session import ClusterInfo, NodeInfo, connect, nodes
