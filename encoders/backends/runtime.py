"""What a backend hands the encoder to run: an image tower, model input in, (tokens, pooled) out.

It lives apart from the `Backend` interface (`encoders.backends.base`) because the two sit on
either side of `encoders.base.Encoder`: a backend takes an encoder and makes its runtime, and
the encoder then runs on that runtime. The exporting backends' text side (`LazyTextTower`,
`TextSide`) is written here once for both.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

__all__ = ["ImageRuntime", "LazyTextTower", "OnFirstUse", "TextRuntime", "TextSide"]

T = TypeVar("T")

#: a loaded text tower: int64 token ids [B, length] → L2-normalised float32 embeddings [B, dim]
Runner = Callable[["np.ndarray"], "np.ndarray"]


class ImageRuntime(Protocol):
    """An image tower made ready by a backend: model input in, (tokens, pooled) out.

    Attributes:
        backend: the backend's name ("openvino").
        detail: for people: the backend's version and where the model came from.
        dtype: what it computes in when not the built model's dtype ("bfloat16"), else None.
    """

    backend: str
    dtype: str | None
    detail: str

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 Bx3xSxS model input → (tokens [B, T, token_dim], pooled [B, dim]), float32."""
        ...


class TextRuntime(ImageRuntime, Protocol):
    """An exporting backend's runtime, which may also hold the family's text tower (exported
    beside the image tower; `encoders.exported.ExportedEncoder` runs text on it).

    Attributes:
        has_text_tower: whether the export holds the text tower (an export made before text
            towers were exported, or one whose text forward could not be exported, has none).
    """

    has_text_tower: bool

    def prepare_text(self) -> None:
        """Start making the text tower ready, on a thread of its own (the first `run_text`
        waits for it)."""
        ...

    def run_text(self, tokens: np.ndarray) -> np.ndarray:
        """int64 token ids [B, context_length] → L2-normalised text embeddings [B, dim],
        float32."""
        ...


class OnFirstUse(Generic[T]):
    """A value made at its first use, once, whichever thread asks first: an export's image
    tower opened for a reader that may only embed text (a search's query), whose compile
    (0.3-0.5 s and ~500 MB for ViT-B/32 on OpenVINO) is then never paid. `OnFirstUse.now`
    makes one already made.

    Args:
        make: makes the value; an exception reaches the caller, and the next call tries again.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make: Callable[[], T] | None = make
        self._value: T | None = None
        self._lock = threading.Lock()

    @classmethod
    def now(cls, make: Callable[[], T]) -> OnFirstUse[T]:
        """One made here (its errors raised here: an export that cannot be opened is a miss)."""
        made = cls(make)
        made()
        return made

    @property
    def made(self) -> bool:
        """Whether the value has been made."""
        return self._make is None

    def __call__(self) -> T:
        if self._make is not None:
            with self._lock:
                if self._make is not None:
                    self._value = self._make()
                    self._make = None
        return self._value  # type: ignore[return-value]


class LazyTextTower:
    """An exported text tower, made ready (loaded, compiled) at its first run: a run whose
    labels are cached never pays for it. One call at a time (OpenVINO's one infer request).
    A tower that takes ids of any length gets them cut after the last end-of-text token
    (`encoders.bpe.text_length`): a prompt is about 10 of CLIP's 77 positions.

    Args:
        path: the exported file.
        load: the backend's loader: the file → (what runs int64 token ids [B, length] to
            L2-normalised float32 embeddings [B, dim], whether any length up to the context
            length is taken; else exactly the context length).
    """

    def __init__(self, path: Path, load: Callable[[Path], tuple[Runner, bool]]):
        self._path = path
        self._load = load
        self._run: Runner | None = None
        self._any_length = False
        self._lock = threading.Lock()

    @classmethod
    def at(cls, path: Path, load: Callable[[Path], tuple[Runner, bool]]) -> LazyTextTower | None:
        """The text tower exported at `path`; None when the export holds none."""
        return cls(path, load) if path.is_file() else None

    def prepare(self) -> None:
        """Start loading on a thread of its own (the first call waits for it): its compile
        then overlaps what the caller does meanwhile (reading the tokenizer's vocabulary)."""
        threading.Thread(target=self._prepared, name="text-tower-load", daemon=True).start()

    def _prepared(self) -> None:
        with contextlib.suppress(Exception):  # the first call loads it again, and raises
            self._ready()

    def _ready(self) -> None:
        with self._lock:
            if self._run is None:
                self._run, self._any_length = self._load(self._path)

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        import numpy as np

        from encoders.bpe import text_length

        self._ready()
        with self._lock:
            if self._any_length:
                tokens = tokens[:, : text_length(tokens)]
            return self._run(np.ascontiguousarray(tokens, dtype=np.int64))


class TextSide:
    """`TextRuntime`'s text half for a runtime holding a `LazyTextTower` (or None) in `_text`
    and its description in `detail`."""

    detail: str
    _text: LazyTextTower | None

    @property
    def has_text_tower(self) -> bool:
        """Whether the export holds the text tower (`run_text` answers)."""
        return self._text is not None

    def prepare_text(self) -> None:
        """Start loading the text tower, where the export holds one (`LazyTextTower.prepare`)."""
        if self._text is not None:
            self._text.prepare()

    def run_text(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids, int64 [B, context_length] → L2-normalised text embeddings [B, dim],
        float32, computed in fp32 (whatever the image tower computes in).

        Raises:
            RuntimeError: the export holds no text tower (`has_text_tower` is False).
        """
        if self._text is None:
            raise RuntimeError(f"the export ({self.detail}) holds no text tower")
        return self._text(tokens)
