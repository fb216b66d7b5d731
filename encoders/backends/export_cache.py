"""The export cache: a model converted for a backend once, kept on disk, never trusted blindly.

An export is a folder `<root>/<backend>/<name>/` holding the backend's files and a
`manifest.json` written last, which records the key and every file's size and SHA-256:

- The key (`ExportKey`) names everything the export depends on: the family, the model, a
  digest of the weights, the code of the forward (its classes' library versions and a digest
  of their source files), the backend and its version, the exporter (torch) version, the
  input size and the variant ("fp32", or "int8" with what calibrated it: an int8 export sits
  beside the fp32 one it was quantised from). Any change gives another folder name, so a
  stale export is never even looked at.
- A folder whose manifest is missing, unreadable, for another key, or whose files differ from
  it in size or digest (a truncated or damaged file) is rebuilt, with a log line saying why;
  so is one the backend then fails to load.
- A build goes to a temporary folder that is renamed into place, whole, under an exclusive
  lock on `<name>.lock`: concurrent first runs export once, the others wait and load it.
  A build cut short by a killed or aborted process leaves its temporary folder; the next
  build beside it removes every such folder whose lock no process holds.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from encoders.errors import ExportCacheError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a race then only costs a second export
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MANIFEST",
    "ExportCache",
    "ExportKey",
    "code_identity",
    "keeps_exports",
    "state_dict_digest",
    "try_lock",
]

logger = logging.getLogger("encoders")

T = TypeVar("T")
MANIFEST = "manifest.json"
_CHUNK = 1 << 24
_ROOM_MARGIN = 32 << 20  # free space kept beyond an export's own size


@dataclass(frozen=True)
class ExportKey:
    """Everything an export depends on.

    Attributes:
        family: the encoder kind ("clip").
        model: the model name ("ViT-B/32").
        weights: a digest of the weights (`state_dict_digest`).
        code: what computes the forward (`code_identity`).
        backend: the backend ("openvino").
        backend_version: the backend library's version.
        exporter: what converted it, with its version ("torch 2.14.1").
        input_size: the model input's side in pixels.
        variant: "fp32", or "int8 ..." naming the calibration frames
            (`encoders.backends.calibration.Calibration.variant`).
    """

    family: str
    model: str
    weights: str
    code: str
    backend: str
    backend_version: str
    exporter: str
    input_size: int
    variant: str = "fp32"

    @property
    def int8(self) -> bool:
        """Whether the export is quantised (its variant names the calibration)."""
        return self.variant.startswith("int8")

    @property
    def name(self) -> str:
        """The export's folder name: readable, and unique to the whole key."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        model = re.sub(r"[^A-Za-z0-9.-]+", "_", self.model).strip("_")
        variant = "" if self.variant == "fp32" else f"{self.variant.split()[0]}-"
        return f"{self.family}-{model}-{self.input_size}px-{variant}{digest[:16]}"


def state_dict_digest(tensors: Iterable[tuple[str, Any]]) -> str:
    """SHA-256 over named torch tensors: names, dtypes, shapes and bytes.

    Args:
        tensors: (name, tensor) pairs, e.g. `module.state_dict().items()`.

    Returns:
        The hex digest.
    """
    import torch  # the caller's tensors are torch's; the rest of the cache needs no torch

    digest = hashlib.sha256()
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def keeps_exports(root: str | os.PathLike[str] | None) -> bool:
    """Whether an export cache at `root` can keep an export: there is one (None: no cache) and
    it can be written (the folder, or the nearest folder above it that exists: it is created
    on the first export). Creates nothing."""
    if root is None:
        return False
    path = _nearest_existing(Path(root).expanduser())
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _nearest_existing(path: Path) -> Path:
    """`path`, or the nearest folder above it that exists (where it would be created)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def code_identity(*parts: Any) -> str:
    """The code of a forward and its export: each class or module with its package's version
    and a digest of the file that defines it (the version covers a library, the digest this
    project's own code).

    Args:
        parts: e.g. the encoder's class and its torch module's class, and the modules that
            capture and convert it.

    Returns:
        A short text, e.g. "encoders.clip.ClipEncoder 1a2b3c4d5e6f; open_clip.model.CLIP 3.3.0
        0f1e2d3c4b5a".
    """
    named = []
    for part in parts:
        module = part.__name__ if inspect.ismodule(part) else part.__module__
        package = sys.modules.get(module.partition(".")[0])
        version = getattr(package, "__version__", "")
        source = inspect.getsourcefile(part)
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:12] if source else ""
        name = module if inspect.ismodule(part) else f"{module}.{part.__qualname__}"
        named.append(" ".join(word for word in (name, version, digest) if word))
    return "; ".join(named)


class ExportCache:
    """Exports for backends under one folder.

    Args:
        root: the cache folder (created when first written), e.g. `~/.cache/streamer/exports`.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def folder(self, key: ExportKey) -> Path:
        """Where the export for `key` lives (whether or not it exists yet)."""
        return self.root / key.backend / key.name

    def check_room(self, key: ExportKey, needed: int) -> None:
        """Refuse, before it is written, an export of `needed` bytes that its disk cannot hold.

        A converter that runs out of space midway does not always say so (OpenVINO's writer
        raises "basic_ios::clear: iostream error" and removes its files), so the backends
        call this with their model's size before saving it.

        Raises:
            ExportCacheError: naming the folder, the space and the fixes.
        """
        free = shutil.disk_usage(_nearest_existing(self.root)).free
        if free < needed + _ROOM_MARGIN:
            raise self._full(key, f"{free / 1e6:.0f} MB free, it needs {needed / 1e6:.0f} MB")

    def _full(self, key: ExportKey, detail: str) -> ExportCacheError:
        return ExportCacheError(
            f"the export cache {self.root} has no room for the {key.backend} export of "
            f"{key.family} {key.model!r} ({detail}): free space there, point XDG_CACHE_HOME at "
            "a disk with room, or run with --no-cache (converts at every start)"
        )

    def problem(self, key: ExportKey) -> str | None:
        """None when the export for `key` is whole and sound (manifest, sizes, digests), else
        what is wrong with it."""
        return _problem(self.folder(key), key)

    def load_or_build(
        self, key: ExportKey, build: Callable[[Path], None], load: Callable[[Path], T]
    ) -> T:
        """The loaded export for `key`: from the cache when it is sound, else built now.

        Args:
            key: what the export depends on.
            build: writes the export's files into the (empty) folder it is given.
            load: loads an export from its folder; any exception means it is unusable.

        Returns:
            What `load` returns.

        Raises:
            Whatever `build` raises, or `load` raises on a folder just built.
        """
        folder = self.folder(key)
        if _problem(folder, key) is None:
            loaded = _try_load(folder, load)
            if loaded is not None:
                return loaded[0]
        with self._locked(folder):
            problem = _problem(folder, key)  # another process may have built it meanwhile
            if problem is None:
                loaded = _try_load(folder, load)
                if loaded is not None:
                    return loaded[0]
                problem = "it failed to load"
            if folder.exists():
                logger.warning("the %s export %s is unusable (%s): rebuilding it",
                               key.backend, folder, problem)  # fmt: skip
                shutil.rmtree(folder)
            _sweep_partials(folder)
            self._build(folder, key, build)
        return load(folder)

    def _build(self, folder: Path, key: ExportKey, build: Callable[[Path], None]) -> None:
        started = time.monotonic()
        partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            build(partial)
            files = {p.name: _file_record(p) for p in sorted(partial.iterdir()) if p.is_file()}
            manifest = {"key": asdict(key), "files": files}
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            _fsync_folder(partial)
            if folder.exists():  # built meanwhile by a process without the lock (no fcntl)
                shutil.rmtree(partial)
            else:
                os.rename(partial, folder)  # atomic: readers see no folder or a whole one
        except BaseException as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._full(key, exc.strerror or "disk full") from exc
            raise
        logger.info("stored the %s export in %s (%.1f s)", key.backend, folder,
                    time.monotonic() - started)  # fmt: skip

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        folder.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        with open(folder.with_name(f"{folder.name}.lock"), "a+b") as lock:
            try:  # released when the file is closed
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                logger.info("another process is making the export %s: waiting for it", folder)
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield


@contextlib.contextmanager
def try_lock(lock: Path) -> Iterator[bool]:
    """Take the export lock file `lock` if nobody holds it, for the `with` block: yields
    whether it was taken (always True without advisory locks)."""
    if fcntl is None:
        yield True
        return
    with open(lock, "a+b") as fh:  # released when the file is closed
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
        else:
            yield True


def _sweep_partials(folder: Path) -> None:
    """Remove the temporary folders of builds that did not finish (a process killed or aborted
    mid-export), beside `folder`, whose lock the caller holds: its own are stale, and another
    export's are when its lock can be taken (nobody is building it)."""
    if fcntl is None:  # no locks to tell a stale build from a running one
        return
    for partial in folder.parent.glob(".*.partial"):
        name = partial.name[1:].rsplit(".", 2)[0]  # .<name>.<pid>.partial
        with contextlib.ExitStack() as held:
            lock = folder.with_name(f"{name}.lock")
            if name != folder.name and not held.enter_context(try_lock(lock)):
                continue  # being built now
            size = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file())
            shutil.rmtree(partial, ignore_errors=True)
            logger.info("removed an export left unfinished by a stopped process: %s (%.0f MB)",
                        partial, size / 1e6)  # fmt: skip


def _problem(folder: Path, key: ExportKey) -> str | None:
    """None when the folder holds a whole export for `key`, else what is wrong with it."""
    if not folder.is_dir():
        return "not built"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        recorded_key = manifest["key"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"no readable manifest: {exc}"
    if recorded_key != asdict(key):
        return "its manifest is for another key"
    for name, record in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != record.get("size"):
            return f"{name} has {size} bytes, the manifest says {record.get('size')}"
        if _sha256(path) != record.get("sha256"):
            return f"{name} does not match its digest"
    return None


def _try_load(folder: Path, load: Callable[[Path], T]) -> tuple[T] | None:
    try:
        return (load(folder),)
    except Exception as exc:  # a backend's reader raises its own types: the export is unusable
        logger.warning("could not load the export %s (%s: %s)", folder, type(exc).__name__, exc)
        return None


def _file_record(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    """Flush the files to disk before the rename publishes them (a crash leaves no torn file)."""
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
