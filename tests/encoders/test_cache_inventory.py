"""The export cache's listing and pruning (`encoders.backends.cache_inventory`), and OpenVINO's
compiled models kept without their weights: on real exports of the tiny CLIP (random weights)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import encoders
from encoders.backends.cache_inventory import inventory, prune, stale_note
from encoders.backends.export_cache import ExportCache, ExportKey, try_lock
from encoders.exported import ExportedEncoder

pytest.importorskip("openvino")

ROOT = Path(__file__).resolve().parents[2]


def _create(cache: Path):
    return encoders.create_encoder("clip", "tiny", weights="random", backend="openvino",
                                   export_cache=cache)  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A cache holding one export of the tiny CLIP, opened once from it (so its compiled model
    is there too); tests copy it."""
    cache = tmp_path_factory.mktemp("exports")
    _create(cache)
    assert isinstance(_create(cache), ExportedEncoder)
    return cache


@pytest.fixture
def cache(tmp_path, exported) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(exported, copy)
    return copy


def _only_export(cache: Path) -> Path:
    (folder,) = [p for p in (cache / "openvino").iterdir() if p.is_dir()]
    return folder


def _add_older(cache: Path) -> Path:
    """An export of the same model by another OpenVINO version, as an upgrade leaves it: its
    folder (with the manifest's key changed), its compiled model, its lock, and its locator."""
    current = _only_export(cache)
    manifest = json.loads((current / "manifest.json").read_text())
    key = dataclasses.replace(ExportKey(**manifest["key"]), backend_version="2025.0.0-old")
    old = ExportCache(cache).folder(key)
    shutil.copytree(current, old)
    manifest["key"] = dataclasses.asdict(key)
    (old / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(cache / "compiled" / "openvino" / current.name,
                    cache / "compiled" / "openvino" / old.name)  # fmt: skip
    old.with_name(f"{old.name}.lock").touch()
    (locator,) = (cache / "locators").glob("openvino-*.json")
    body = json.loads(locator.read_text())
    body["request"]["backend_version"] = "2025.0.0"
    body["key"] = dataclasses.asdict(key)
    (cache / "locators" / "openvino-old.json").write_text(json.dumps(body))
    past = time.time() - 3 * 86400
    os.utime(old, (past, past))
    return old


def test_the_listing_names_the_current_export_and_its_size(cache) -> None:
    found = inventory(cache)
    (export,) = found.exports
    assert export.current and not export.building
    assert export.key is not None and (export.key.family, export.key.model) == ("clip", "tiny")
    files = [p for p in cache.rglob("*") if p.is_file() and "locators" not in p.parts]
    assert export.size == sum(p.stat().st_size for p in files if p.suffix != ".lock")
    assert found.stale == [] and found.leftovers == []


def test_prune_removes_an_older_version_and_leftovers_and_keeps_what_runs_open(cache) -> None:
    old = _add_older(cache)
    orphan = cache / "compiled" / "openvino" / "clip-gone-64px-0123456789abcdef"
    orphan.mkdir()
    (orphan / "1.blob").write_bytes(b"x" * 1000)
    partial = cache / "openvino" / f".{old.name}.4242.partial"
    partial.mkdir()
    (partial / "image.bin").write_bytes(b"x" * 500)
    found = inventory(cache)
    assert [e.folder for e in found.stale] == [old]
    old_locator = cache / "locators" / "openvino-old.json"
    assert {p for p, _ in found.leftovers} == {orphan, partial, old_locator}
    removed = prune(cache)
    assert {p for p, _ in removed} == {old, orphan, partial, old_locator}
    assert not old.exists() and not (cache / "compiled" / "openvino" / old.name).exists()
    assert not old.with_name(f"{old.name}.lock").exists()
    assert not old_locator.exists()
    (export,) = inventory(cache).exports
    assert export.current
    assert isinstance(_create(cache), ExportedEncoder)  # still opened without building


def test_an_export_being_built_is_neither_pruned_nor_called_old(cache) -> None:
    current = _only_export(cache)
    old = _add_older(cache)
    with try_lock(old.with_name(f"{old.name}.lock")) as taken:
        assert taken
        (listed,) = [e for e in inventory(cache).exports if e.folder == old]
        assert listed.building and inventory(cache).stale == []
        removed = [path for path, _ in prune(cache, everything=True)]
    assert current in removed and not current.exists()
    assert old not in removed and old.exists()


def test_prune_everything_empties_the_cache_and_a_run_exports_again(cache, caplog) -> None:
    _add_older(cache)
    prune(cache, everything=True)
    assert inventory(cache).exports == [] and inventory(cache).size == 0
    assert not list((cache / "locators").glob("*.json"))
    with caplog.at_level(logging.INFO, logger="encoders"):
        assert not isinstance(_create(cache), ExportedEncoder)  # built and exported again
    assert "exporting clip 'tiny' to OpenVINO" in caplog.text
    assert inventory(cache).exports[0].current


def test_a_new_export_says_what_older_ones_take(cache, caplog) -> None:
    _add_older(cache)
    key = ExportKey(**json.loads((_only_current(cache) / "manifest.json").read_text())["key"])
    with caplog.at_level(logging.INFO, logger="encoders"):
        stale_note(ExportCache(cache), key)
    assert "1 older openvino export(s) of clip 'tiny'" in caplog.text
    assert "streamer encoders cache --prune" in caplog.text
    caplog.clear()
    prune(cache)
    with caplog.at_level(logging.INFO, logger="encoders"):
        stale_note(ExportCache(cache), key)
    assert "older" not in caplog.text


def _only_current(cache: Path) -> Path:
    (export,) = [e for e in inventory(cache).exports if e.current]
    return export.folder


def test_opening_an_export_marks_it_used(cache) -> None:
    folder = _only_export(cache)
    past = time.time() - 86400
    os.utime(folder, (past, past))
    assert isinstance(_create(cache), ExportedEncoder)
    assert time.time() - inventory(cache).exports[0].used < 60


def test_the_compiled_model_is_kept_without_its_weights(cache) -> None:
    folder = _only_export(cache)
    compiled = cache / "compiled" / "openvino" / folder.name
    assert isinstance(_create(cache), ExportedEncoder)  # compiled for this copy's path
    blobs = list(compiled.rglob("*.blob"))
    assert blobs
    weights = (folder / "image.bin").stat().st_size
    assert max(b.stat().st_size for b in blobs) < weights / 2  # (ViT-B/32: 0.7 MB of 335)
    # a blob an earlier version kept with the weights, straight in the folder, goes
    (compiled / "123.blob").write_bytes(b"x" * weights)
    assert isinstance(_create(cache), ExportedEncoder)
    assert not (compiled / "123.blob").exists()
    assert list(compiled.rglob("*.blob")) == blobs


def _cli(cache_home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "streamer", "encoders", "cache", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_the_command_lists_and_prunes(tmp_path, exported) -> None:
    home = tmp_path / "home"
    shutil.copytree(exported, home / "streamer" / "exports")
    cache = home / "streamer" / "exports"
    old = _add_older(cache)
    listed = _cli(home)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(f"export cache {cache}: ")
    rows = [line.split() for line in lines[3:5]]
    assert rows[0][:3] == ["openvino", "clip", "tiny"] and rows[0][-2:] == ["opens", "it"]
    assert rows[1][-4:] == ["3", "d", "ago", "old"]
    assert "`streamer encoders cache --prune` removes them" in listed.stdout
    pruned = _cli(home, "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed {old} (" in pruned.stdout and "2 removed" in pruned.stdout  # and its locator
    assert not old.exists()
    again = _cli(home)
    assert "--prune` removes" not in again.stdout and len(again.stdout.splitlines()) == 4
