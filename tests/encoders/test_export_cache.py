"""The export cache: reused when sound, a new folder for a new key, rebuilt when damaged.

The OpenVINO tests export the real tiny CLIP (random weights); whether an export happened is
read from the log line it writes and from the files' modification times, never from timing.
The cache's own contract (keys, the lock, a failed build) is checked with a plain file as the
export, which takes milliseconds.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import encoders
import encoders.backends.export_cache as export_cache
from encoders.backends.export_cache import MANIFEST, ExportCache, ExportKey
from encoders.errors import ExportCacheError

pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")

EXPORTING = "exporting clip 'tiny' to OpenVINO"
REBUILDING = "unusable"


def _openvino_tiny(cache: Path, weights: str = "random") -> encoders.Encoder:
    return encoders.create_encoder(
        "clip", "tiny", weights=weights, backend="openvino", export_cache=cache
    )


def _exports(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "openvino").iterdir() if p.is_dir())


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def _exported(caplog) -> int:
    return sum(EXPORTING in r.getMessage() for r in caplog.records)


@pytest.fixture
def built(tmp_path, caplog) -> tuple[Path, Path, np.ndarray]:
    """A cache with the tiny CLIP exported once: (cache, its export folder, an embedding)."""
    caplog.set_level(logging.INFO, logger="encoders")
    encoder = _openvino_tiny(tmp_path)
    assert _exported(caplog) == 1
    (folder,) = _exports(tmp_path)
    frame = np.full((64, 64, 3), 100, np.uint8)
    return tmp_path, folder, encoder.embed(frame).numpy()


@pytest.mark.slow  # an export of the tiny CLIP each: 8-10 s
def test_a_second_load_uses_the_export(built, caplog) -> None:
    cache, folder, embedding = built
    before = _mtimes(folder)
    assert {"image.xml", "image.bin", MANIFEST} <= set(before)
    caplog.clear()
    encoder = _openvino_tiny(cache)
    assert _exported(caplog) == 0 and _mtimes(folder) == before and _exports(cache) == [folder]
    frame = np.full((64, 64, 3), 100, np.uint8)
    np.testing.assert_array_equal(encoder.embed(frame).numpy(), embedding)


@pytest.mark.slow  # an export of the tiny CLIP each: 8-10 s
def test_other_weights_are_another_export(built, tmp_path_factory, caplog) -> None:
    cache, folder, embedding = built
    torch_tiny = encoders.create_encoder("clip", "tiny", weights="random", device="cpu")
    with torch.no_grad():
        torch_tiny.module.visual.ln_post.bias.add_(0.5)  # other weights, same model name
    checkpoint = torch_tiny.save(tmp_path_factory.mktemp("weights") / "tuned.pt")
    caplog.clear()
    tuned = _openvino_tiny(cache, weights=str(checkpoint))
    assert _exported(caplog) == 1
    assert len(_exports(cache)) == 2 and folder in _exports(cache)  # the old one is kept
    frame = np.full((64, 64, 3), 100, np.uint8)
    assert not np.allclose(tuned.embed(frame).numpy(), embedding, atol=1e-3)
    torch.testing.assert_close(tuned.embed(frame), torch_tiny.embed(frame), atol=1e-5, rtol=0)


@pytest.mark.slow  # an export of the tiny CLIP each: 8-10 s
@pytest.mark.parametrize("damage", ["truncate", "flip", "no manifest"])
def test_a_damaged_export_is_rebuilt_not_trusted(built, caplog, damage) -> None:
    cache, folder, embedding = built
    weights = folder / "image.bin"
    size = weights.stat().st_size
    if damage == "truncate":
        with open(weights, "r+b") as fh:
            fh.truncate(size // 2)
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[size // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:
        (folder / MANIFEST).unlink()  # as a crash mid-build would leave it, were it renamed
    caplog.clear()
    encoder = _openvino_tiny(cache)
    assert _exported(caplog) == 1
    assert any(REBUILDING in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert weights.stat().st_size == size
    recorded = json.loads((folder / MANIFEST).read_text())["files"]["image.bin"]
    assert recorded["size"] == size
    frame = np.full((64, 64, 3), 100, np.uint8)
    np.testing.assert_allclose(encoder.embed(frame).numpy(), embedding, atol=1e-6)


# -- the cache itself, with a plain file as the export ------------------------------------------

KEY = ExportKey("clip", "ViT-B/32", "ab12", "CLIP 1.0", "openvino", "1.0", "torch 2.0", 224)


def test_every_part_of_the_key_names_another_folder(tmp_path) -> None:
    cache = ExportCache(tmp_path)
    changes = {"family": "dinov2", "model": "ViT-B/16", "weights": "cd34", "code": "CLIP 1.1",
               "backend": "onnx",
               "backend_version": "1.1", "exporter": "torch 2.1", "input_size": 336}  # fmt: skip
    variants = [replace(KEY, **{field: value}) for field, value in changes.items()]
    folders = {cache.folder(k) for k in [KEY, *variants]}
    assert len(folders) == 1 + len(variants)
    assert cache.folder(KEY).name.startswith("clip-ViT-B_32-224px-")


def test_an_edit_to_the_code_that_captures_or_converts_is_another_key(tmp_path, monkeypatch):
    # The key's code names the family's classes and the modules that capture the forward and
    # convert it: an export made by other code is stale, whatever else is the same.
    from encoders.backends.capture import export_key

    encoder = encoders.create_encoder("clip", "tiny", weights="random", device="cpu")
    code = export_key(encoder, "openvino", "1").code
    for module in ("encoders.backends.capture ", "encoders.backends._tower ",
                   "encoders.backends.openvino_backend "):  # fmt: skip
        assert module in code, code
    converter = tmp_path / "edited_converter.py"
    converter.write_text("SCALE = 1\n")
    monkeypatch.syspath_prepend(tmp_path)
    import edited_converter

    before = export_cache.code_identity(edited_converter)
    converter.write_text("SCALE = 2\n")
    assert export_cache.code_identity(edited_converter) != before


def test_concurrent_first_loads_build_once(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="encoders")
    cache = ExportCache(tmp_path)
    builds: list[int] = []
    started = threading.Barrier(4)
    results: list[str] = []

    def build(folder: Path) -> None:
        builds.append(1)
        threading.Event().wait(0.2)  # a slow export: the others arrive while it runs
        (folder / "model.txt").write_text("exported")

    def first_run() -> None:
        started.wait()
        results.append(cache.load_or_build(KEY, build, lambda f: (f / "model.txt").read_text()))

    threads = [threading.Thread(target=first_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == ["exported"] * 4 and len(builds) == 1
    waited = [r for r in caplog.records if "waiting for it" in r.getMessage()]
    assert 1 <= len(waited) <= 3  # the loads that found the export being made said so
    assert [p.name for p in (tmp_path / "openvino").iterdir() if p.is_dir()] == [
        cache.folder(KEY).name
    ]  # no partial folder left behind


def test_a_build_says_where_it_stored_the_export_and_how_long_it_took(tmp_path, caplog):
    # a first run's export can take half a minute on a busy machine: the line says so
    caplog.set_level(logging.INFO, logger="encoders")

    def build(folder: Path) -> None:
        time.sleep(0.2)
        (folder / "model.bin").write_bytes(b"x")

    ExportCache(tmp_path).load_or_build(KEY, build, lambda f: f)
    [line] = [r.getMessage() for r in caplog.records if "stored the" in r.getMessage()]
    took = re.fullmatch(r"stored the openvino export in .+ \((\d+\.\d) s\)", line)
    assert took and 0.2 <= float(took[1]) < 10, line


def test_a_failed_build_leaves_nothing_behind(tmp_path) -> None:
    cache = ExportCache(tmp_path)

    def build(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("the converter failed")

    with pytest.raises(RuntimeError, match="converter failed"):
        cache.load_or_build(KEY, build, lambda f: None)
    assert [p for p in (tmp_path / "openvino").iterdir() if p.is_dir()] == []


def test_builds_cut_short_are_swept_by_the_next_build(tmp_path, caplog) -> None:
    # A process killed or aborted mid-export (Ctrl-C twice, `docker stop`, kill -9) leaves its
    # temporary folder, a whole model's worth; the next build removes those nobody is building.
    fcntl = pytest.importorskip("fcntl", reason="advisory locks tell a running build (POSIX)")
    cache = ExportCache(tmp_path)
    other = cache.folder(replace(KEY, model="ViT-B/16"))
    busy = cache.folder(replace(KEY, model="ViT-L/14"))
    left = [f.with_name(f".{f.name}.{pid}.partial") for f, pid in
            [(cache.folder(KEY), 4242), (other, 4243), (busy, 4244)]]  # fmt: skip
    for partial in left:
        partial.mkdir(parents=True)
        (partial / "image.bin").write_bytes(b"x" * 1000)
    with open(busy.with_name(f"{busy.name}.lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is exporting ViT-L/14 right now
        caplog.set_level(logging.INFO, logger="encoders")
        built = cache.load_or_build(KEY, lambda f: (f / "m.txt").write_text("m"),
                                    lambda f: (f / "m.txt").read_text())  # fmt: skip
    assert built == "m"
    assert [p.exists() for p in left] == [False, False, True]
    swept = [r.getMessage() for r in caplog.records if "left unfinished" in r.getMessage()]
    assert len(swept) == 2


def test_a_full_disk_is_named_with_the_fix_and_leaves_nothing(tmp_path) -> None:
    cache = ExportCache(tmp_path)

    def build(folder: Path) -> None:
        (folder / "image.bin").write_bytes(b"x" * 1000)
        raise OSError(28, "No space left on device")  # what Python's own writers raise

    with pytest.raises(ExportCacheError) as caught:
        cache.load_or_build(KEY, build, lambda f: None)
    message = str(caught.value)
    assert str(tmp_path) in message and "has no room" in message
    assert "XDG_CACHE_HOME" in message and "--no-cache" in message
    assert isinstance(caught.value, OSError)  # an `except OSError` still catches it
    assert [p for p in (tmp_path / "openvino").iterdir() if p.is_dir()] == []


def test_an_export_the_disk_cannot_hold_is_refused_before_it_is_written(
    tmp_path, monkeypatch
) -> None:
    # OpenVINO's writer reports a full disk as "basic_ios::clear: iostream error" and removes
    # its files: the backends check the room for their model's size before they save it.
    cache = ExportCache(tmp_path / "not yet made")
    usage = export_cache.shutil.disk_usage
    free = {"bytes": 100 << 20}
    monkeypatch.setattr(export_cache.shutil, "disk_usage",
                        lambda path: usage(path)._replace(free=free["bytes"]))  # fmt: skip
    with pytest.raises(ExportCacheError, match=r"\(105 MB free, it needs 350 MB\)"):
        cache.check_room(KEY, 350_000_000)
    cache.check_room(KEY, 50_000_000)  # room enough
    assert not cache.root.exists()  # the check creates nothing


@pytest.mark.slow  # an export of the tiny CLIP
def test_a_real_export_checks_the_room_first(tmp_path, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(ExportCache, "check_room", lambda self, key, needed: seen.append(needed))
    _openvino_tiny(tmp_path)
    (folder,) = _exports(tmp_path)
    # each tower's weights, checked before it is written: the image tower, then the text tower
    assert len(seen) == 2
    for needed, name in zip(seen, ("image.bin", "text.bin"), strict=True):
        weights = (folder / name).stat().st_size
        assert weights <= needed <= 1.05 * weights  # the weights' own size
