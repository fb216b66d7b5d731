"""What the export cache holds, and pruning what this installation no longer opens.

Every export is keyed by everything it depends on (`encoders.backends.export_cache`), so an
upgrade of streamer, of a backend or of torch makes new exports beside the old ones, and the
old ones are never looked at again: a ViT-B/32 on OpenVINO is about 335 MB, and a few upgrades
leave gigabytes. This module lists the cache and removes what is stale:

- an export is *current* when a locator written by this installation (the same library
  versions and `encoders` source, the installed backend's version) names it, or it is the
  fp32 export a current int8 export was quantised from; runs write that locator whenever they
  open or build an export, so an export the installed version has used once is current;
- everything else is stale: exports of other versions, OpenVINO's compiled models whose export
  is gone, builds a stopped process left unfinished, and locators of other versions or of
  exports that are gone.

`prune` removes the stale part (`everything=True`: the whole cache) and never an export being
built (its lock is held). A second installation that shares the cache (another virtualenv)
loses its exports to a prune here and makes them again on its next run. Each run marks the
export it opens as used (the folder's modification time), which the listing shows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from encoders.backends.export_cache import MANIFEST, ExportCache, ExportKey, try_lock
from encoders.backends.locator import COMPILED, LOCATORS, compiled_folder, is_current

__all__ = [
    "CacheInventory",
    "CachedExport",
    "inventory",
    "mark_used",
    "prune",
    "stale_note",
]

logger = logging.getLogger("encoders")


@dataclass(frozen=True)
class CachedExport:
    """One export in the cache.

    Attributes:
        folder: the export's folder (`<root>/<backend>/<name>`).
        key: its key, from its manifest (None: no readable manifest).
        size: bytes on disk, with OpenVINO's compiled model of it.
        used: when a run last opened it (seconds since the epoch).
        current: whether this installation opens it (see the module's docstring).
        building: whether a process holds its lock (being built now).
    """

    folder: Path
    key: ExportKey | None
    size: int
    used: float
    current: bool
    building: bool

    @property
    def backend(self) -> str:
        return self.folder.parent.name


@dataclass
class CacheInventory:
    """The cache's contents: exports, and the stale leftovers that are not exports."""

    root: Path
    exports: list[CachedExport] = field(default_factory=list)
    leftovers: list[tuple[Path, int]] = field(default_factory=list)  # (path, bytes)

    @property
    def stale(self) -> list[CachedExport]:
        return [e for e in self.exports if not e.current and not e.building]

    @property
    def size(self) -> int:
        return sum(e.size for e in self.exports) + sum(size for _, size in self.leftovers)


def inventory(root: str | os.PathLike[str]) -> CacheInventory:
    """What the export cache at `root` holds (an empty inventory when there is none)."""
    root = Path(root).expanduser()
    found = CacheInventory(root)
    if not root.is_dir():
        return found
    locators = _read_locators(root)
    current = _current_names(locators)
    names: set[tuple[str, str]] = set()
    for backend in _backend_folders(root):
        for folder in sorted(backend.iterdir()):
            if not folder.is_dir():
                continue
            if folder.name.startswith("."):  # .<name>.<pid>.partial: an unfinished build
                owner = folder.name[1:].rsplit(".", 2)[0]
                if _free(backend / f"{owner}.lock"):
                    found.leftovers.append((folder, _bytes(folder)))
                continue
            names.add((backend.name, folder.name))
            compiled = compiled_folder(root, backend.name, folder.name)
            found.exports.append(CachedExport(
                folder, _key(folder), _bytes(folder) + _bytes(compiled),
                folder.stat().st_mtime, (backend.name, folder.name) in current,
                not _free(backend / f"{folder.name}.lock"),
            ))  # fmt: skip
    for compiled in sorted((root / COMPILED).glob("*/*")):
        if (compiled.parent.name, compiled.name) not in names:
            found.leftovers.append((compiled, _bytes(compiled)))
    for path, body, ours in locators:
        if not (ours and _names(body) in names):  # another version's, or its export is gone
            found.leftovers.append((path, path.stat().st_size))
    return found


def prune(root: str | os.PathLike[str], everything: bool = False) -> list[tuple[Path, int]]:
    """Remove the stale part of the export cache at `root` (`everything`: all of it but the
    exports being built). Returns what was removed, with its size in bytes."""
    found = inventory(root)
    removed = list(found.leftovers)
    for path, _ in found.leftovers:
        _remove(path)
    for export in found.exports:
        if export.building or (export.current and not everything):
            continue
        with contextlib.ExitStack() as held:
            lock = export.folder.with_name(f"{export.folder.name}.lock")
            if lock.exists() and not held.enter_context(try_lock(lock)):
                continue  # a build began since the listing
            _remove(export.folder)
            _remove(compiled_folder(found.root, export.backend, export.folder.name))
            removed.append((export.folder, export.size))
        lock.unlink(missing_ok=True)
    if everything:
        for path in (found.root / LOCATORS).glob("*.json"):
            _remove(path)
    return removed


def stale_note(cache: ExportCache, key: ExportKey) -> None:
    """After `key`'s export is made: say how much older exports of the same model take, and
    the command that removes them (an upgrade leaves the previous version's behind)."""
    try:
        older = [e for e in inventory(cache.root).stale if _same_model(e.key, key)]
    except OSError:  # a listing that fails costs only the note
        return
    if older:
        logger.info(
            "%d older %s export(s) of %s %r take %.0f MB in %s: `streamer encoders cache "
            "--prune` removes what this installation no longer opens", len(older), key.backend,
            key.family, key.model, sum(e.size for e in older) / 1e6, cache.root,
        )  # fmt: skip


def mark_used(folder: Path) -> None:
    """Note that a run opened the export in `folder` (its modification time; the locator's
    check reads its files' times, not the folder's). A read-only cache is left as it is."""
    with contextlib.suppress(OSError):
        os.utime(folder)


def _same_model(key: ExportKey | None, other: ExportKey) -> bool:
    return key is not None and (key.backend, key.family, key.model, key.variant[:4]) == (
        other.backend, other.family, other.model, other.variant[:4])  # fmt: skip


def _current_names(locators: list[tuple[Path, dict, bool]]) -> set[tuple[str, str]]:
    """(backend, export name) of every export this installation's locators name, and the fp32
    export each current int8 one was quantised from."""
    names = set()
    for _, body, ours in locators:
        named = _names(body) if ours else None
        if named is not None:
            key = ExportKey(**body["key"])
            names.add(named)
            names.add((key.backend, dataclasses.replace(key, variant="fp32").name))
    return names


def _names(body: dict) -> tuple[str, str] | None:
    """(backend, export name) a locator's body names; None when it names none readably."""
    try:
        key = ExportKey(**body["key"])
    except (KeyError, TypeError, ValueError):
        return None
    return key.backend, key.name


def _read_locators(root: Path) -> list[tuple[Path, dict, bool]]:
    """Each locator file, read once: its path, its body ({} when unreadable), and whether this
    installation wrote it (`is_current`)."""
    locators = []
    for path in sorted((root / LOCATORS).glob("*.json")):
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            body = {}
        body = body if isinstance(body, dict) else {}
        locators.append((path, body, is_current(body)))
    return locators


def _backend_folders(root: Path) -> list[Path]:
    return [p for p in sorted(root.iterdir()) if p.is_dir() and p.name not in (COMPILED, LOCATORS)]


def _key(folder: Path) -> ExportKey | None:
    try:
        return ExportKey(**json.loads((folder / MANIFEST).read_text())["key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _free(lock: Path) -> bool:
    """Whether nobody holds `lock` (a missing lock file is free)."""
    if not lock.exists():
        return True
    with try_lock(lock) as taken:
        return taken


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
