"""The project's optional extras and the command that installs one.

A hint says `pip install "openvino>=2026.4" "nncf>=3.4"`, never `pip install "streamer[cpu]"`:
the name `streamer` on the Python Package Index is another project's, so a hint by name would
install that one over this. The packages are read from this installation's metadata (the
extras of pyproject.toml); `_PYPROJECT` mirrors them for an installation without it (a
checkout on `PYTHONPATH`), and a test keeps the two equal.
"""

from __future__ import annotations

import functools
import re

__all__ = ["install_hint", "packages"]

_DISTRIBUTION = "streamer"
_PYPROJECT = {
    "cluster": ("ray>=2.40",),
    "mqtt": ("aiomqtt>=2",),
    "webrtc": ("aiortc>=1.16",),
    "cpu": ("openvino>=2026.4", "nncf>=3.4"),
    "onnx": ("onnxruntime>=1.32", "onnx>=1.23", "onnxscript>=0.7"),
}


@functools.cache
def packages(extra: str) -> tuple[str, ...]:
    """The requirements of `extra` ("cpu" → ("openvino>=2026.4", "nncf>=3.4"))."""
    import importlib.metadata  # here: only an error message needs it, not a start

    try:
        requires = importlib.metadata.requires(_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    marker = re.compile(r";\s*extra\s*==\s*[\"']" + re.escape(extra) + r"[\"']")
    found = tuple(req.split(";")[0].strip() for req in requires if marker.search(req))
    return found or _PYPROJECT.get(extra, ())


def install_hint(extra: str, *only: str) -> str:
    """`pip install "openvino>=2026.4" "nncf>=3.4"`: the packages of `extra` (those named in
    `only`, when given: `install_hint("cpu", "nncf")`)."""
    wanted = [p for p in packages(extra) if not only or re.split(r"[<>=!~\[ ]", p)[0] in only]
    return "pip install " + " ".join(f'"{p}"' for p in wanted)
