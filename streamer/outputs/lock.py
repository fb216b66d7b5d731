"""One writer per output file: a stream holds a lock for each file it writes.

Two runs started with the same `-o` (a service and a run by hand, a unit started twice) would
both truncate and write one file: the video ends up with the frames of both, or does not
play, and a live run would move the other's recording aside as "from before". Each stream
takes an exclusive `fcntl.flock` per output before it touches it, so the second run stops at
once with the path and the fix, and the first run's files are left as they are.

The locks are files of their own in streamer's cache (`locks/`, named by a digest of the
output's real path), not beside the outputs and not the outputs themselves: an output that
does not exist yet is not made early, and one moved aside (`keep_outputs`) does not take the
lock with it. The kernel drops a lock when its process ends, even by SIGKILL, so a crashed
run never leaves a file locked; its lock file stays and is used again. They hold for the
runs of one user (one cache) on one machine. Without `fcntl` (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from streamer.core.samples import cache_dir
from streamer.errors import ConfigError
from streamer.outputs.options import STDOUT

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputLocks"]

log = logging.getLogger("streamer")


class OutputLocks:
    """The locks of one stream's output files, held from `acquire` to `release`.

    Args:
        stream: the stream's name, for messages.
        paths: its output files ("-", standard output, takes none).
        folder: where the lock files are (None: streamer's cache, `locks/`).
    """

    def __init__(self, stream: str, paths: Iterable[str], folder: Path | None = None) -> None:
        self.stream = stream
        self.paths = [path for path in paths if path != STDOUT]
        self.folder = folder if folder is not None else cache_dir() / "locks"
        self._held: list[tuple[Path, int]] = []  # (lock file, its open descriptor)

    def acquire(self) -> OutputLocks:
        """Take every output's lock without waiting.

        Raises:
            ConfigError: another run (or another stream of this one) writes one of them;
                then none is held.
        """
        if fcntl is None or self._held:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only home: the outputs are written unlocked
            log.debug("no output locks: cannot make %s (%s)", self.folder, exc)
            return self
        try:
            for path in self.paths:
                self._lock(path)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Let every lock go (idempotent). Its file is removed first, while still held: a run
        that opened it meanwhile finds, once it gets the lock, that it holds a removed file,
        and takes the new one."""
        for file, fd in self._held:
            with contextlib.suppress(OSError):
                file.unlink()
            os.close(fd)  # closing drops the lock
        self._held.clear()

    def _lock(self, path: str) -> None:
        real = os.path.realpath(path)
        file = self.folder / (hashlib.sha256(real.encode()).hexdigest()[:32] + ".lock")
        while True:
            try:
                fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                log.debug("no lock for %s: %s", path, exc)
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").split(maxsplit=1)[:1]
                os.close(fd)
                raise ConfigError(self._taken(path, holder[0] if holder else "")) from None
            except OSError as exc:  # a file system without locks
                os.close(fd)
                log.debug("no lock for %s: %s", path, exc)
                return
            if _same_file(fd, file):
                break
            os.close(fd)  # its holder removed it as it let go: take the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {real}\n".encode(), 0)
        self._held.append((file, fd))

    def _taken(self, path: str, holder: str) -> str:
        if holder == str(os.getpid()):
            by = "another stream of this run"
        else:
            by = f"another run (pid {holder})" if holder.isdigit() else "another run"
        return (
            f"{self.stream}: output {path!r} is being written by {by}: give this run other "
            "output names (a template with {stream} for several streams), or stop that run "
            "first"
        )


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
