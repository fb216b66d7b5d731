"""An archive directory: its metadata file, its layout, and the lock that keeps it one writer's.

    DIR/archive.json     {"format": 1, "created": ..., "streamer": ..., "encoder": {...}}
    DIR/index/           the LanceDB database (the "moments" table)
    DIR/recordings/      segment files of live streams (`streamer.archive.recordings`)
    DIR/write.lock       held (fcntl) by the one run that writes the archive

`archive.json` says which encoder made the stored embeddings, since a search is meaningful
only with the same encoder: another model's vectors live in another space, and comparing
them ranks by noise. Opening never changes or deletes anything: a directory that is not an
archive, one written by a newer format or one with damaged metadata is an `ArchiveError`
naming the path and the fix.

Readers (search, info) take no lock: LanceDB readers see the last committed version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from streamer.core.checks import why_unwritable
from streamer.core.version import __version__
from streamer.errors import ArchiveError, ConfigError

__all__ = [
    "ARCHIVE_FILE",
    "FORMAT",
    "INDEX_DIR",
    "LOCK_FILE",
    "RECORDINGS_DIR",
    "ArchiveMeta",
    "EncoderSpec",
    "WriterLock",
    "check_writable",
    "create_or_open",
    "open_for_writing",
    "read_meta",
]

FORMAT = 1  # the layout this code writes and reads; a larger number is a newer streamer's
ARCHIVE_FILE = "archive.json"
INDEX_DIR = "index"
RECORDINGS_DIR = "recordings"
LOCK_FILE = "write.lock"
_OWN_ENTRIES = {ARCHIVE_FILE, INDEX_DIR, RECORDINGS_DIR, LOCK_FILE}


@dataclass(frozen=True)
class EncoderSpec:
    """The encoder whose embeddings an archive holds: enough to load it again.

    Attributes:
        kind: encoder family ("clip", "dinov2", "default").
        model: model name within the family, as `encoders.create_encoder` takes it.
        weights: "pretrained", "random", or a local checkpoint path (what was loaded, never
            "auto").
        dim: length of the embedding vectors.
    """

    kind: str
    model: str
    weights: str
    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim < 1:
            raise ConfigError(f"dim must be a positive integer, got {self.dim!r}")

    @classmethod
    def of(cls, encoder: Any, weights: str = "pretrained") -> EncoderSpec:
        """The spec of a loaded `encoders.Encoder`.

        Args:
            encoder: the encoder (its `info` gives kind, model, dim and whether it is random).
            weights: what was asked for (`EncoderChoice.weights`): "pretrained", "auto" or a
                path; the encoder itself says whether its weights ended up random.
        """
        info = encoder.info
        if info.random_weights:
            weights = "random"
        elif weights == "auto":  # and the pretrained weights were there
            weights = "pretrained"
        return cls(info.kind, info.model, weights, info.dim)

    def describe(self) -> str:
        """For messages: "clip ViT-B/32 (pretrained, 512-d)"."""
        return f"{self.kind} {self.model} ({self.weights}, {self.dim}-d)"

    @property
    def named(self) -> tuple[str, str, str]:
        """(kind, model, weights): which encoder, without what it makes."""
        return self.kind, self.model, self.weights

    def check_dim(self, dim: int, root: Path) -> None:
        """Refuse the encoder this spec names when it makes vectors of another length than
        the spec says: the archive's `archive.json` was edited (its model or its dim) after
        the archive was made.

        Args:
            dim: the length of the vectors of the encoder this spec names, loaded.
            root: the archive directory, for the message.

        Raises:
            ArchiveError: `dim` is not `self.dim`.
        """
        if dim != self.dim:
            raise ArchiveError(
                f"{Path(root) / ARCHIVE_FILE} disagrees with itself: it says the archive's "
                f"embeddings are {self.dim}-d, but the encoder it names, {self.kind} "
                f"{self.model}, makes {dim}-d ones; the file was changed after the archive was "
                f"made. Nothing was changed; restore {ARCHIVE_FILE} from a backup, or set its "
                "encoder back to the one the archive was made with"
            )

    def check_same(self, other: EncoderSpec, root: Path) -> None:
        """Refuse to mix embeddings of two encoders in one archive, or to search across them.

        Raises:
            ArchiveError: `other` is the encoder this spec names but makes vectors of another
                length (`check_dim`).
            ConfigError: `other` (the run's or the searcher's encoder) differs from this one
                (the archive's) in kind, model, weights or dim.
        """
        if other != self and other.dim != self.dim and other.named == self.named:
            self.check_dim(other.dim, root)  # the same encoder: archive.json was edited
        if other != self:
            raise ConfigError(
                f"archive {root} holds embeddings of {self.describe()}, but the encoder here is "
                f"{other.describe()}: their vectors cannot be compared. Use --encoder "
                f"{self.kind} --model {self.model} --weights {self.weights}, or another "
                "--archive directory"
            )


@dataclass(frozen=True)
class ArchiveMeta:
    """The contents of `archive.json`.

    Attributes:
        format: layout version (`FORMAT`).
        created: when the archive was created, ISO 8601 UTC.
        streamer: version of the streamer that created it.
        encoder: the encoder of its embeddings.
    """

    format: int
    created: str
    streamer: str
    encoder: EncoderSpec

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps(asdict(self), indent=2) + "\n"


def read_meta(root: str | Path) -> ArchiveMeta:
    """Read and check `root/archive.json`; changes nothing.

    Raises:
        ArchiveError: `root` is missing or a file, has no `archive.json`, or the file cannot be
            read, is damaged, or was written by a newer streamer.
    """
    root = Path(root)
    _check_is_directory(root)
    path = root / ARCHIVE_FILE
    if not path.exists():
        raise ArchiveError(
            f"{root} is not a streamer archive (it has no {ARCHIVE_FILE}); record one with "
            f"`streamer run INPUT --archive {root}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"cannot read {path}: {exc}; check its permissions") from exc
    except json.JSONDecodeError as exc:
        raise _damaged(path, f"it is not valid JSON ({exc})") from exc
    return _parse_meta(path, data)


def create_or_open(root: str | Path, encoder: EncoderSpec) -> ArchiveMeta:
    """Open the archive at `root` for writing, creating it when the directory is new or empty.

    Call it while holding the `WriterLock`, so two runs cannot both create it.

    Args:
        root: the archive directory (created with its parents when missing).
        encoder: the encoder of the run that writes; must be the archive's.

    Returns:
        The archive's metadata.

    Raises:
        ArchiveError: as `read_meta`; or `root` is a directory holding other things (it is not
            taken over), or its index exists without `archive.json`.
        ConfigError: the archive was made with another encoder.
    """
    root = Path(root)
    if (root / ARCHIVE_FILE).exists() or (root.exists() and not root.is_dir()):
        meta = read_meta(root)
        meta.encoder.check_same(encoder, root)
        _make_layout(root)
        return meta
    _check_can_create(root)
    meta = ArchiveMeta(FORMAT, _now_iso(), __version__, encoder)
    _make_layout(root)
    _write_atomically(root / ARCHIVE_FILE, meta.to_json())
    return meta


def open_for_writing(root: str | Path, encoder: EncoderSpec) -> tuple[ArchiveMeta, WriterLock]:
    """Take the archive's writer lock, then open it for writing (creating it when new).

    Nothing is made in a directory that cannot become an archive: the checks of
    `create_or_open` run before the lock file is written.

    Returns:
        The metadata and the held lock (release it when done writing).

    Raises:
        ArchiveError: as `create_or_open`, or another run holds the lock.
        ConfigError: the archive was made with another encoder.
    """
    root = Path(root)
    if (root / ARCHIVE_FILE).exists() or (root.exists() and not root.is_dir()):
        read_meta(root).encoder.check_same(encoder, root)  # fail before changing anything
    else:
        _check_can_create(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create the archive directory {root}: {exc}") from exc
    lock = WriterLock(root).acquire()
    try:
        return create_or_open(root, encoder), lock
    except BaseException:
        lock.release()
        raise


def check_writable(root: str | Path, doing: str) -> None:
    """Refuse, before anything changes, an archive whose folders or lock cannot be written.

    Args:
        root: the archive directory.
        doing: what would write it, for the message ("prune").

    Raises:
        ArchiveError: a folder of its index or its recordings, or its lock file (or the
            archive's folder, when the lock file is to be made) cannot be written by this
            user; the message names it and the fix.
    """
    root = Path(root)
    lock = root / LOCK_FILE
    folders = [f for sub in (INDEX_DIR, RECORDINGS_DIR) for f, _, _ in os.walk(root / sub)]
    whys = (why_unwritable(folder) for folder in folders)
    why = next((why for why in whys if why), None)
    if why is None and not lock.is_file():
        why = why_unwritable(root)
    elif why is None and not os.access(lock, os.W_OK):
        why = f"{lock} is on a read-only file system or not writable by this user"
    if why:
        raise ArchiveError(
            f"cannot {doing} archive {root}: {why}; nothing was changed. Make the archive "
            f"writable (mount it read-write, or give this user write permission), or {doing} "
            "it as the user that writes it"
        )


def _check_can_create(root: Path) -> None:
    """Refuse to make an archive in a directory that holds something else.

    Raises:
        ArchiveError: `root` is a file, holds entries an archive does not have, or has an
            index but no `archive.json` (damaged: which encoder made it is unknown).
    """
    _check_is_directory(root, missing_ok=True)
    if not root.exists():
        return
    foreign = sorted(entry.name for entry in root.iterdir() if entry.name not in _OWN_ENTRIES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ArchiveError(
            f"{root} is not empty and not a streamer archive (it holds {shown}); give --archive "
            "a new or empty directory"
        )
    index = root / INDEX_DIR
    if index.is_dir() and any(index.iterdir()):
        raise _damaged(
            root / ARCHIVE_FILE, f"it is missing but {index} holds an index; restore the file"
        )


class WriterLock:
    """The archive's single-writer lock: an exclusive `fcntl.flock` on `DIR/write.lock`.

    The kernel releases it when the process ends, even by SIGKILL, so a crashed run never
    leaves the archive locked. The file keeps the holder's pid for the message another run
    gets; it is never deleted (deleting a lock file races with the next run opening it).

    Args:
        root: the archive directory (must exist).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._file is not None

    def acquire(self) -> WriterLock:
        """Take the lock without waiting.

        Raises:
            ArchiveError: another run (or another open of this archive) holds it, or the lock
                file cannot be opened.
        """
        if self._file is not None:
            return self
        path = self.root / LOCK_FILE
        try:
            file = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        except OSError as exc:
            raise ArchiveError(f"cannot open the archive's lock {path}: {exc}") from exc
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise ArchiveError(
                f"archive {self.root} is being written by another run (pid {holder}); one "
                "archive takes one writer: stop that run, or give this one another --archive"
            ) from exc
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        """Let the lock go (idempotent)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# --- helpers ------------------------------------------------------------------------------------


def _check_is_directory(root: Path, *, missing_ok: bool = False) -> None:
    if root.exists() and not root.is_dir():
        raise ArchiveError(
            f"archive path {root} is a file, not a directory; give --archive a directory"
        )
    if not root.exists() and not missing_ok:
        raise ArchiveError(
            f"no archive at {root} (no such directory); record one with "
            f"`streamer run INPUT --archive {root}`"
        )


def _damaged(path: Path, what: str) -> ArchiveError:
    return ArchiveError(
        f"the archive's metadata {path} is damaged: {what}. Nothing was changed; restore "
        f"{ARCHIVE_FILE} from a backup, or move the directory aside and start a new archive"
    )


def _parse_meta(path: Path, data: object) -> ArchiveMeta:
    if not isinstance(data, dict):
        raise _damaged(path, f"it holds a JSON {type(data).__name__}, not an object")
    fmt = data.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise _damaged(path, f"'format' must be a positive integer, got {fmt!r}")
    if fmt > FORMAT:
        raise ArchiveError(
            f"archive {path.parent} was written by a newer streamer (archive format {fmt}, "
            f"created by streamer {data.get('streamer', '?')}); this streamer reads format "
            f"{FORMAT}: upgrade streamer to open it"
        )
    encoder = data.get("encoder")
    try:
        if not isinstance(encoder, dict):
            raise TypeError(f"'encoder' must be an object, got {encoder!r}")
        spec = EncoderSpec(**{key: encoder[key] for key in ("kind", "model", "weights", "dim")})
        return ArchiveMeta(fmt, str(data["created"]), str(data["streamer"]), spec)
    except (KeyError, TypeError, ValueError) as exc:
        missing = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise _damaged(path, missing) from exc


def _make_layout(root: Path) -> None:
    try:
        for folder in (root, root / INDEX_DIR, root / RECORDINGS_DIR):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create the archive directory {root}: {exc}") from exc


def _write_atomically(path: Path, text: str) -> None:
    # Written beside, synced, then renamed over: a crash leaves the old file or the new one.
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise ArchiveError(f"cannot write {path}: {exc}") from exc


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
