"""The web viewer (`streamer run ... --serve`): a page with every stream's live overlaid video,
captions, tags and status, plus `/metrics`, `/healthz` and JSON for tools.

::

    writer threads ─► WebViewer.frame (keeps a reference) ─► JPEG at ≤ max_fps, low priority
                                                 │            └─► /streams/{name}/mjpeg
                                                 └─► H.264/VP8 once per stream (`webrtc`)
                                                              └─► every WebRTC peer
    event loop ─► WebViewer.caption / alert ─► history ─► /events (SSE), /api/captions
    run counters ─────────────────────────────────────► /api/status, /metrics
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamer.watch.web.metrics import render_metrics

if TYPE_CHECKING:
    from streamer.watch.web.server import ViewerLimits, WebViewer

__all__ = ["ViewerLimits", "WebViewer", "render_metrics"]


def __getattr__(name: str) -> Any:
    """The viewer itself loads on first use, with aiohttp (~80 ms): a run's configuration
    reads this package's options without it."""
    if name in ("ViewerLimits", "WebViewer"):
        from streamer.watch.web import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
