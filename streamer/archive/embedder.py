"""How a query becomes a vector in an archive's embedding space: the archive's own encoder,
loaded for a search (`Embedder.load`: the export a run left, else torch), lent by a loaded
encoder (`Embedder.of`), or borrowed from a running pipeline (`Embedder.of_service`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.archive.store import EncoderSpec

__all__ = ["SERVICE_TIMEOUT_S", "Embedder"]

#: how long a query waits for a running pipeline's model (it answers between batches)
SERVICE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Embedder:
    """How a query becomes a vector in the archive's embedding space.

    Attributes:
        image: an HxWx3 uint8 RGB picture → its L2-normalised embedding [dim].
        text: a text → its embedding [dim] in the same space; None for encoders with no text
            tower (text queries then search the captions only).
        spec: the encoder these come from, checked against the archive's.
    """

    image: Callable[[np.ndarray], np.ndarray]
    text: Callable[[str], np.ndarray] | None
    spec: EncoderSpec

    @classmethod
    def of(cls, encoder: Any, spec: EncoderSpec | None = None) -> Embedder:
        """The embedder of a loaded `encoders.Encoder` (its numpy `embed_array` and
        `embed_text_array`: an encoder opened from an export gives them without torch).

        Args:
            encoder: the encoder.
            spec: what it is, as an archive records it (default: from `encoder.info`, with
                weights "pretrained" unless they are random).
        """

        def image(picture: np.ndarray) -> np.ndarray:
            return np.asarray(encoder.embed_array(picture)[0], np.float32)

        def text(words: str) -> np.ndarray:
            return np.asarray(encoder.embed_text_array([words])[0], np.float32)

        return cls(image, text if encoder.has_text else None, spec or EncoderSpec.of(encoder))

    @classmethod
    def of_service(
        cls,
        service: Any,
        loop: asyncio.AbstractEventLoop,
        spec: EncoderSpec,
        after: Callable[[], Embedder],
    ) -> Embedder:
        """The embedder of a running pipeline's encoder service (`run.encoder`), called from
        threads other than `loop`'s (a search's pool): a query waits its turn on the run's own
        model, between the frames' batches, and no second model is loaded.

        Args:
            after: the embedder once the run has ended (its service or its loop closed while
                its page still answers): made once, at the first query that finds it so.

        Raises (from its callables):
            TimeoutError: the run's model gave no answer within `SERVICE_TIMEOUT_S`.
        """
        own: list[Embedder] = []
        lock = threading.Lock()

        def ended() -> Embedder:
            with lock:
                if not own:
                    own.append(after())
                return own[0]

        def on_service(method: Any, value: Any) -> np.ndarray | None:
            if own or loop.is_closed():
                return None
            try:
                return asyncio.run_coroutine_threadsafe(method([value]), loop).result(
                    SERVICE_TIMEOUT_S
                )[0]
            except RuntimeError:  # the service, or the loop, closed: the run has ended
                return None

        def image(picture: np.ndarray) -> np.ndarray:
            found = on_service(service.embed_images, picture)
            return ended().image(picture) if found is None else found

        def text(words: str) -> np.ndarray:
            found = on_service(service.embed_text, words)
            return ended().text(words) if found is None else found  # type: ignore[misc]

        return cls(image, text if service.model.has_text else None, spec)

    @classmethod
    def load(
        cls,
        spec: EncoderSpec,
        root: Path,
        device: str | None = None,
        export_cache: str | Path | None = None,
    ) -> Embedder:
        """Load the encoder an archive's `archive.json` names: the export a run left in
        `export_cache` when there is one (opened in a fraction of a second, without torch's
        model), else the torch model (seconds). Nothing is exported here: a search embeds one
        query, and an export takes longer than the torch model it replaces.

        Raises:
            ArchiveError: the encoder makes vectors of another length than `spec` says: the
                file was edited (`EncoderSpec.check_dim`).
        """
        encoder = None
        if export_cache is not None:
            from encoders import open_export

            encoder = open_export(spec.kind, spec.model, weights=spec.weights,
                                  export_cache=export_cache, device=device)  # fmt: skip
        if encoder is None:
            from streamer.analysis.worker import EncoderChoice, load_encoder

            encoder = load_encoder(EncoderChoice(spec.kind, spec.model, spec.weights, device,
                                                 backend="torch"))  # fmt: skip
        spec.check_dim(encoder.info.dim, root)
        return cls.of(encoder, spec)
