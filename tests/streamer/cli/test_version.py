"""One version number: the package's metadata, `streamer --version` and what an archive or the
MQTT device blocks record all read streamer/core/version.py."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from streamer import __version__
from streamer.core import version


def test_the_installed_metadata_reads_the_version_module() -> None:
    # scripts/setup.sh installs the checkout (editable), so its metadata came from pyproject's
    # dynamic version; a number typed into pyproject again would drift from the module's
    assert importlib.metadata.version("streamer") == version.__version__ == __version__


def test_the_command_line_prints_it() -> None:
    done = subprocess.run([sys.executable, "-m", "streamer", "--version"], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == f"streamer {__version__}"
