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

from streamer.watch.web.metrics import render_metrics
from streamer.watch.web.server import ViewerLimits, WebViewer

__all__ = ["ViewerLimits", "WebViewer", "render_metrics"]
