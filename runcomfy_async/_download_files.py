"""The file side of a download: a temp file renamed into place, or removed.

Each output is written in a worker thread to a temp file beside its destination, then
renamed into place (and fsynced when asked) or removed: a partial file never survives.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, TypeVar

import anyio.to_thread

from ._download_policy import DownloadError, inside_folder

__all__ = ["PartFile", "make_folder", "on_disk"]

T = TypeVar("T")

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


class PartFile:
    """A temp file beside its destination: written, then renamed into place or removed.

    ``write`` and ``commit`` run in a worker thread. A native asyncio cancel does not wait for
    the thread, so ``discard`` (inline) takes the same lock: it waits for the operation in
    progress, and any operation that starts after it does nothing.
    """

    def __init__(self, folder: Path, name: str):
        self.target = inside_folder(folder, name)
        self.size = 0
        self._hash = hashlib.sha256()
        self._lock = threading.Lock()
        self._done = False
        while True:
            path = folder / f".{name}.part-{secrets.token_hex(6)}"
            try:
                # O_EXCL: never write through a file or link that is already there.
                fd = os.open(path, _OPEN_FLAGS, 0o666)
            except FileExistsError:
                continue
            break
        self.path = path
        self._file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytearray) -> None:
        """Hash and append ``data`` (in a worker thread); nothing once discarded."""
        with self._lock:
            if not self._done:
                self._hash.update(data)
                self._file.write(data)
                self.size += len(data)

    def hexdigest(self) -> str:
        """The sha256 of what was written, as hex."""
        return self._hash.hexdigest()

    def commit(self, fsync: bool) -> None:
        """Rename the file into place, flushed (and fsynced with the folder when asked)."""
        with self._lock:
            if self._done:
                return
            self._done = True
            self._file.flush()
            if fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.path, self.target)
            if fsync:
                _fsync_folder(self.target.parent)

    def discard(self) -> None:
        """Remove the temp file; any write or commit that starts later does nothing."""
        with self._lock:
            self._done = True
            with suppress(OSError):
                self._file.close()
            with suppress(OSError):
                os.unlink(self.path)  # already gone once committed


async def on_disk(url: str, func: Callable[..., T], *args: object) -> T:
    """Run a blocking file operation in a thread; a disk error becomes a final DownloadError."""
    try:
        return await anyio.to_thread.run_sync(func, *args)
    except OSError as exc:
        raise DownloadError(f"could not write the file: {exc}", url=url) from exc


def make_folder(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed and return its resolved path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir.resolve()


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself (POSIX); not possible, nor needed, on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
