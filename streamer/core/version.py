"""streamer's version: the one number `streamer --version`, the package's metadata (pyproject's
dynamic version reads it from here), an archive's `meta.json` and the MQTT device blocks give.

A constant, not `importlib.metadata.version("streamer")`: a checkout run without installing has
no metadata, and PyPI's "streamer" is another project whose metadata would answer if it were
installed beside this one."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
