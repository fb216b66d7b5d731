"""Lazy access to open_clip with this package's model configs registered.

open_clip is imported on first use, not when `encoders` is imported, so `import encoders` stays
fast for code that never builds a CLIP model (the CLI's --help, the web viewer).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import ModuleType

_CONFIG_DIR = Path(__file__).parent / "model_configs"
_lock = threading.Lock()
_registered = False


def load_open_clip() -> ModuleType:
    """Import open_clip and register `encoders/model_configs/*.json` (the tiny test model).

    Returns:
        The `open_clip` module.
    """
    global _registered
    import open_clip

    with _lock:
        # add_model_config appends to open_clip's search path and rescans on every call.
        if not _registered:
            open_clip.add_model_config(_CONFIG_DIR)
            _registered = True
    return open_clip
