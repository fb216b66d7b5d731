"""Export locators: from a request, straight to its export, without building the torch model.

The export cache's key (`ExportKey`) names the weights by a digest of the built model's state
dict, so finding an export by its key means building the model first: seconds, on every run.
A locator is a small file, written beside the exports when one is made or loaded the normal way,
that maps what was *asked for* to the export that answers it::

    <cache>/locators/<backend>-<digest of the request>.json
        {"request": {...}, "key": {...the ExportKey...}, "card": {...what the encoder is...}}

The request (`ExportRequest`) holds only what is known before anything is built: the family and
the model (as `parse_model_name` resolves the names asked for), the weights' identity (a
checkpoint's path, size and modification time; the pretrained tag; "random", which is seeded),
the backend and its version, the precision, and the versions and source of the code that would
build and export the model. A warm run finds the locator, checks the export it names (each
file's size and modification time as they were when the locator was written, after the cache
had checked their digests; any difference and the export is checked again the cache's way: the
manifest's key, sizes and digests), and opens it. Anything off is a miss, logged, and the run
takes the normal path (which rebuilds what is stale and writes a new locator): a changed
checkpoint (its size or time), a damaged or missing export, an unreadable or mismatched locator.
Nothing stale is trusted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from encoders.backends.export_cache import ExportCache, ExportKey
from encoders.info import EncoderInfo
from encoders.registry import PreprocessConfig

__all__ = [
    "COMPILED",
    "LOCATORS",
    "ExportRequest",
    "Located",
    "compiled_folder",
    "find_export",
    "is_current",
    "write_locator",
]

logger = logging.getLogger("encoders")

#: the folders beside the backends' ones: locators, and OpenVINO's compiled models
LOCATORS = "locators"
COMPILED = "compiled"
#: the libraries whose versions decide what a build and an export give
_LIBRARIES = ("torch", "open_clip_torch", "transformers", "numpy")
_CODE_DIGEST: str | None = None


@dataclass(frozen=True)
class ExportRequest:
    """What an encoder was asked to be, as known before it is built.

    Attributes:
        kind, model: the family and the model as `parse_model_name` resolves them (the
            default model by its name, so naming it or not finds one export).
        weights: the weights' identity (`weights_identity`).
        backend, backend_version: what runs it.
        precision: the precision it runs in.
        code: the versions of the libraries and a digest of this package's source.
        variant: "fp32", or the int8 calibration's variant (`Calibration.variant`: the video's
            name, size, a digest of its start, and the frame count).
    """

    kind: str
    model: str
    weights: str
    backend: str
    backend_version: str
    precision: str
    code: str
    variant: str = "fp32"

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Located:
    """An export found by its request: where it is, its key, what the encoder is (`card`: the
    fields an `ExportedEncoder` needs, as the built encoder gave them), and a folder where the
    backend may keep what it makes of the export (OpenVINO's compiled model)."""

    folder: Path
    key: ExportKey
    card: dict[str, Any]
    compiled: Path


def weights_identity(weights: str) -> str | None:
    """What the weights argument names, cheaply: "random" (seeded, so always the same),
    "pretrained" (the tag is in the model name), or a checkpoint's path, size and modification
    time (each file's, for a folder). None when the path cannot be read (no locator then)."""
    if weights in ("random", "pretrained"):
        return weights
    path = Path(weights).expanduser()
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        stats = [(str(p.resolve()), p.stat()) for p in files]
    except OSError:
        return None
    return json.dumps([(name, st.st_size, st.st_mtime_ns) for name, st in stats])


def request_for(
    kind: str, model: str | None, weights: str, backend: str, precision: str, variant: str = "fp32"
) -> ExportRequest | None:
    """The request of `create_encoder(kind, model, weights=..., backend=..., precision=...)`
    (with `int8=True`: `variant` names the calibration) for an installed backend; None when it
    has no identity (unreadable weights, no backend)."""
    identity = weights_identity(weights)
    version = _version(backend)
    if identity is None or version is None:
        return None
    return ExportRequest(
        kind=kind.strip().lower(), model=(model or "").strip(), weights=identity,
        backend=backend, backend_version=version, precision=precision, code=_code(),
        variant=variant,
    )  # fmt: skip


def find_export(cache: ExportCache, request: ExportRequest) -> Located | None:
    """The sound export `request` was answered with before, or None (a miss, logged)."""
    path = _path(cache, request)
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved["request"] != asdict(request):
            raise ValueError("it is for another request")
        key = ExportKey(**saved["key"])
        card = _checked_card(saved["card"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.info("export locator %s is unusable (%s): building the model", path.name, exc)
        return None
    folder = cache.folder(key)
    # The digests were checked when the locator was written; files with the size and time they
    # had then are those files. Any other: the export is checked again, as the cache does.
    files = saved.get("files")
    if files is None or files != _stats(folder):
        problem = cache.problem(key)
        if problem is not None:
            logger.info("the export %s named by locator %s is unusable (%s): building the model",
                        folder, path.name, problem)  # fmt: skip
            return None
        write_locator(cache, request, key, card)  # sound: note the files as they are now
    return Located(folder, key, card, compiled_folder(cache.root, key.backend, key.name))


def compiled_folder(root: Path, backend: str, name: str) -> Path:
    """Where a backend may keep what it makes of the export `name` (OpenVINO's compiled
    models), beside the backends' folders of the cache at `root`."""
    return root / COMPILED / backend / name


def is_current(locator: dict[str, Any]) -> bool:
    """Whether a locator file's body was written by this installation: the same libraries and
    `encoders` source, and the backend's installed version (its exports are the ones a run
    here opens)."""
    request = locator.get("request")
    if not isinstance(request, dict):
        return False
    backend = request.get("backend")
    return (
        isinstance(backend, str)
        and request.get("code") == _code()
        and request.get("backend_version") == _version(backend)
    )


def _checked_card(card: Any) -> dict[str, Any]:
    """The card as saved, once every part of it makes what an `ExportedEncoder` makes of it
    (a file edited or written by another version raises here, not in the run)."""
    card = dict(card)
    PreprocessConfig(**card["preprocess"])
    EncoderInfo(**card["info"])
    float(card["logit_scale"])
    bool(card["has_text"])
    return card


def write_locator(
    cache: ExportCache, request: ExportRequest, key: ExportKey, card: dict[str, Any]
) -> None:
    """Remember that `request` is answered by the export of `key` (atomically; a cache that
    cannot be written costs the next run time, not correctness)."""
    path = _path(cache, request)
    files = _stats(cache.folder(key))  # as the cache just checked them (or built them)
    body = {"request": asdict(request), "key": asdict(key), "card": card, "files": files}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(body, indent=2) + "\n")
        partial.replace(path)
    except OSError as exc:
        logger.warning("cannot write the export locator %s: %s", path, exc)


def _stats(folder: Path) -> dict[str, list[int]] | None:
    """Each file of an export with its size and modification time (None: unreadable)."""
    try:
        return {p.name: [p.stat().st_size, p.stat().st_mtime_ns]
                for p in sorted(folder.iterdir()) if p.is_file()}  # fmt: skip
    except OSError:
        return None


def _path(cache: ExportCache, request: ExportRequest) -> Path:
    # beside the backends' folders, not in one: a backend's folder holds its exports only
    return cache.root / LOCATORS / f"{request.backend}-{request.digest}.json"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _code() -> str:
    """The libraries' versions and a digest of this package's source (read once)."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        package = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for source in sorted(package.rglob("*.py")):
            digest.update(source.relative_to(package).as_posix().encode())
            digest.update(source.read_bytes())
        versions = [f"{name} {_version(name)}" for name in _LIBRARIES]
        _CODE_DIGEST = f"{'; '.join(versions)}; encoders {digest.hexdigest()[:16]}"
    return _CODE_DIGEST
