"""The archive: what `streamer` remembers of every stream and file it has seen (issue 14).

An archive directory holds `archive.json` (`store`), an index of moments in an embedded
LanceDB database (`moments`, `index`, `writer`), searched by picture and by words (`search`),
the LLM's summaries beside them (`summaries`, made by `summary_observer`), questions answered
from both with citations (`ask`), and the recordings of live streams. `Archive` is the Python
API.

Names load on first use: `import streamer.archive` costs nothing until one is used, and the
ones that need LanceDB and pyarrow (`Archive`, `MomentWriter`, ...) load them only then.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

__all__ = [
    "Answer",
    "Archive",
    "ArchiveError",
    "ArchiveInfo",
    "Chapter",
    "Citation",
    "Embedder",
    "EncoderSpec",
    "Hit",
    "IndexPolicy",
    "Moment",
    "MomentPicker",
    "MomentRef",
    "MomentWriter",
    "Query",
    "StreamInfo",
    "Summary",
    "WriterPolicy",
    "WriterStats",
    "preload",
    "thumbnail_jpeg",
]

_HOME = {
    "Answer": "ask",
    "Citation": "ask",
    "Chapter": "summaries",
    "MomentRef": "summaries",
    "Summary": "summaries",
    "Archive": "archive",
    "ArchiveInfo": "archive",
    "StreamInfo": "archive",
    "ArchiveError": "store",
    "EncoderSpec": "store",
    "Embedder": "embedder",
    "Hit": "search",
    "Query": "search",
    "IndexPolicy": "index",
    "Moment": "moments",
    "MomentPicker": "moments",
    "thumbnail_jpeg": "moments",
    "MomentWriter": "writer",
    "WriterPolicy": "writer",
    "WriterStats": "writer",
}

if TYPE_CHECKING:
    from streamer.archive.archive import Archive, ArchiveInfo, StreamInfo
    from streamer.archive.ask import Answer, Citation
    from streamer.archive.embedder import Embedder
    from streamer.archive.index import IndexPolicy
    from streamer.archive.moments import Moment, MomentPicker, thumbnail_jpeg
    from streamer.archive.search import Hit, Query
    from streamer.archive.store import ArchiveError, EncoderSpec
    from streamer.archive.summaries import Chapter, MomentRef, Summary
    from streamer.archive.writer import MomentWriter, WriterPolicy, WriterStats


def preload() -> None:
    """Import LanceDB on a background thread now. The import costs about 2 s of CPU (most of it
    in the models of its REST namespace client, which an embedded database never uses); a run
    with `--archive` starts it while its encoder loads, so the first stream does not pay it."""
    threading.Thread(
        target=importlib.import_module, args=("lancedb",), name="archive-preload", daemon=True
    ).start()


def __getattr__(name: str) -> Any:
    # PEP 562: load the module that holds a name when the name is first asked for.
    if name in _HOME:
        value = getattr(importlib.import_module(f"streamer.archive.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
