"""Fixtures shared by every test: the real sample clip, ffprobe, small encoders."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from streamer.core.samples import sample_clip as fetch_sample_clip

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    """Big Buck Bunny, 1280×720 H.264 + AAC, 25 fps, 132 frames (fetched once into .cache/)."""
    return fetch_sample_clip(REPO / ".cache" / "samples")


@pytest.fixture(scope="session")
def user_caches(tmp_path_factory) -> Path:
    """The model caches of a user who has run streamer before, kept for the session: exported
    encoders (`exports`) and embedded labels (`text`). The examples and the README's snippets
    share them, so ViT-B/32 is exported once a session, not once a test (about 20 s each on
    two cores); what a first run does with an empty cache is tested on its own
    (tests/streamer/test_warm_start.py, tests/encoders/test_export_cache.py)."""
    root = tmp_path_factory.mktemp("user-caches")
    for name in ("exports", "text"):
        (root / name).mkdir()
    return root


@pytest.fixture
def user_env(tmp_path, sample_clip, user_caches) -> dict[str, str]:
    """A user's environment for a script run as a user runs it: a cache of its own
    (`XDG_CACHE_HOME`) holding the sample clip and the session's `user_caches`, no repo on
    sys.path."""
    cache = tmp_path / "cache" / "streamer"
    (cache / "samples").mkdir(parents=True)
    (cache / "samples" / "bigbuckbunny.mp4").write_bytes(sample_clip.read_bytes())
    for name in ("exports", "text"):
        (cache / name).symlink_to(user_caches / name, target_is_directory=True)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Imports a script of the repository that is not a package module (`bench/…`,
    `scripts/…`) from its path relative to the repository, as a module of its own."""

    def load(relative: str) -> ModuleType:
        path = REPO / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def _ffmpeg(*args: str | Path) -> None:
    """Run Debian's ffmpeg quietly, overwriting its output; fail the test when it fails."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory, sample_clip) -> Path:
    """The first 2 s of the sample clip at 320×180, with its audio: fast end-to-end runs."""
    out = tmp_path_factory.mktemp("clips") / "small.mp4"
    _ffmpeg("-i", sample_clip, "-t", "2", "-vf", "scale=320:180", "-c:v", "libx264",
            "-preset", "ultrafast", "-c:a", "copy", out)  # fmt: skip
    return out


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory, sample_clip) -> Path:
    """The sample clip six times over (792 frames, 31.7 s): long enough to interrupt."""
    out = tmp_path_factory.mktemp("clips") / "long.mp4"
    _ffmpeg("-stream_loop", "5", "-i", sample_clip, "-c", "copy", out)
    return out


@pytest.fixture(scope="session")
def truncated_clip(tmp_path_factory, sample_clip) -> Path:
    """The sample clip with its index first (faststart), cut after 500 kB: about 49 of its 132
    frames decode, then the file ends mid-stream."""
    folder = tmp_path_factory.mktemp("clips")
    whole, cut = folder / "faststart.mp4", folder / "truncated.mp4"
    _ffmpeg("-i", sample_clip, "-c", "copy", "-movflags", "+faststart", whole)
    cut.write_bytes(whole.read_bytes()[:500_000])
    return cut


@pytest.fixture(scope="session")
def tiny_encoder():
    """A real open_clip CLIP architecture, tiny and random: the whole pipeline, fast."""
    import encoders

    return encoders.create_encoder("clip", "tiny", weights="random", device="cpu")


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], Path]]:
    """Makes a folder and what it holds read-only to this process, for real: without write
    permission, or for root (whom permissions do not stop) as a read-only bind mount of it
    (skipped where root may not mount). Undone at the end."""
    undo: list[Callable[[], object]] = []

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                mode = path.stat().st_mode
                path.chmod(mode & ~0o222)
                undo.append(lambda path=path, mode=mode: path.chmod(mode))
            return folder
        for argv in (["mount", "--bind", folder, folder],
                     ["mount", "-o", "remount,bind,ro", folder]):  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode:
                for step in reversed(undo):
                    step()
                pytest.skip(f"root cannot make a read-only bind mount here: {done.stderr}")
            if argv[1] == "--bind":
                undo.append(lambda: subprocess.run(["umount", folder], check=True))
        return folder

    yield make
    for step in reversed(undo):
        step()
