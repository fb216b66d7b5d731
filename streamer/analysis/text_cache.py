"""A disk cache for label text embeddings.

Embedding a vocabulary of a hundred prompts through CLIP's text tower costs a fraction of a
second on a CPU (ViT-B/32; a bigger text tower more, and a first call compiles it), and the
answer only changes with the model, its weights and the prompts. The
cache is keyed by those. When the encoder knows a digest of its weights (one run from an export:
`EncoderInfo.weights_digest`) the key holds it and a hit is trusted, so a warm run needs no text
tower at all; otherwise, because a checkpoint can change under the same name, a hit is checked
by embedding the first prompt again and comparing (one prompt instead of all of them).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from encoders import EncoderInfo

log = logging.getLogger("streamer.analysis.text_cache")

_AGREE = 0.999  # cosine of a fresh first-prompt embedding to the cached one


def cache_key(info: EncoderInfo, texts: list[str]) -> str:
    """A file-name-safe key for `texts` embedded by the encoder `info` describes: by its
    weights digest when it has one (trusted: `cached_text_embeddings`), else by its weights'
    description (checked on a hit)."""
    versions = [_version("torch"), _version("open_clip_torch")]
    if info.weights_digest is not None:
        parts = ["digest", info.kind, info.model, info.weights_digest, info.dim, info.dtype,
                 *versions, texts]  # fmt: skip
    else:
        parts = [info.kind, info.model, info.weights, info.num_params, info.dim, info.dtype,
                 *versions, texts]  # fmt: skip
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _version(distribution: str) -> str | None:
    # the installed version, read without importing the library (a warm run may never need it)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


async def cached_text_embeddings(
    folder: str | os.PathLike[str] | None,
    info: EncoderInfo,
    texts: list[str],
    embed: Callable[[list[str]], Awaitable[np.ndarray]],
) -> np.ndarray:
    """Text embeddings for `texts`, from the cache in `folder` when valid, else computed.

    Args:
        folder: cache folder (created if missing); None disables the cache.
        info: the encoder's description (part of the key).
        texts: the prompts.
        embed: computes embeddings for a list of prompts ([n, dim] float32).

    Returns:
        [len(texts), dim] float32.
    """
    if folder is None:
        return await embed(texts)
    path = Path(folder) / f"{cache_key(info, texts)}.npy"
    cached = _load(path, len(texts))
    if cached is not None and info.weights_digest is not None:
        return cached  # keyed by the weights' digest: these weights computed it
    if cached is not None:
        fresh = await embed(texts[:1])
        if float(fresh[0] @ cached[0]) >= _AGREE:
            return cached
        log.info("text embedding cache %s is stale (weights changed); recomputing", path.name)
    embeddings = await embed(texts)
    _store(path, embeddings)
    return embeddings


def _load(path: Path, rows: int) -> np.ndarray | None:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return array if array.ndim == 2 and array.shape[0] == rows else None


def _store(path: Path, embeddings: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as fh:
            np.save(fh, embeddings.astype(np.float32))
        partial.replace(path)  # atomic: concurrent runs never read half a file
    except OSError as exc:
        # A cache that cannot be written costs time, not correctness: say so and go on.
        log.warning("cannot write the text embedding cache %s: %s", path, exc)
