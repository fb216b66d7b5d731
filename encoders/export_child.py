"""The child process of a background export (`encoders.backends.background`): it makes the
export `create_encoder` makes for the request it is given, then exits.

    python -m encoders.export_child '{"kind": "clip", "model": "ViT-B/32", ...}'

The request is `create_encoder`'s keyword arguments as JSON, a calibration as its video's path
with its frame count in "calibration_frames". The child runs at nice 10 or lower priority: the
frames of the run that started it come first. Its log goes to its standard error, which the
parent keeps and shows when the child fails.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from encoders.backends.calibration import Calibration
from encoders.factory import create_encoder

__all__ = ["main"]

_NICE = 10


def main(argv: list[str]) -> int:
    """Make the export for the request in `argv[1]`; 0 once it is in the cache."""
    if hasattr(os, "nice"):  # (not on Windows)
        os.nice(max(0, _NICE - os.nice(0)))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    request = json.loads(argv[1])
    frames = request.pop("calibration_frames", None)
    if frames is not None:
        request["calibration"] = Calibration(request["calibration"], frames)
    create_encoder(**request)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
