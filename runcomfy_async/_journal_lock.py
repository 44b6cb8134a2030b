"""One run per output folder: an exclusive lock on a file beside the journal.

Two runs appending to one journal would each submit the inputs the other has not journaled
yet, paying twice. The lock is an ``fcntl.flock`` on ``<journal>.lock``, taken before the
journal (or the inputs) are read. The kernel drops it when its holder exits, however it exits,
so the lock of a killed run is never an obstacle; the file itself stays and says who held it
last (pid, host, start time) so that a refused run can name the holder.

Within one process a second lock on the same journal is refused too (two runners there would
pay twice just the same), unless the first was taken with ``handover=True``: the CLI takes the
lock before it scans the inputs and hands it to the runner it then starts. Where ``fcntl`` does
not exist (Windows) the lock only guards against runs in the same process.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path

from ._journal import JournalError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["JournalLock", "JournalLockedError"]


class JournalLockedError(JournalError):
    """Another run holds the batch's journal (its pid and host are in the message)."""


_HELD: dict[Path, tuple[int, int, bool]] = {}  # lock file -> (fd, holders here, handover)
_GUARD = threading.Lock()


class JournalLock:
    """An exclusive, re-entrant lock on one journal, held from :meth:`acquire` to :meth:`release`.

    Args:
        journal: the journal file the lock guards; the lock file is ``<journal>.lock``.
        handover: let the next lock on this journal in this process join this one (for a
            caller that holds the lock while it prepares a runner that takes it again).

    Example:
        >>> with JournalLock("out/journal.jsonl"):  # doctest: +SKIP
        ...     ...  # read the journal, submit, append
    """

    def __init__(self, journal: str | os.PathLike[str], *, handover: bool = False):
        self.path = Path(str(journal) + ".lock")
        self.handover = handover
        self._held = False

    def __enter__(self) -> JournalLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock at once or fail (never waits).

        Raises:
            JournalLockedError: another process holds it, or this one does without handover.
            OSError: the lock file cannot be created.
        """
        if self._held:
            return
        key = self.path.parent.resolve() / self.path.name
        with _GUARD:
            held = _HELD.get(key)
            if held is not None:
                fd, count, handover = held
                if not handover:
                    raise JournalLockedError(
                        f"this process already runs a batch on {self.path.parent}; "
                        "one run per journal"
                    )
                _HELD[key] = (fd, count + 1, False)
                self._held = True
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise JournalLockedError(
                    f"another run is using {self.path.parent} ({holder}); wait for it to end, "
                    "or choose another --out"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            _write_holder(fd)
            _HELD[key] = (fd, 1, self.handover)
            self._held = True

    def release(self) -> None:
        """Give the lock back (idempotent); the last holder in the process unlocks it."""
        if not self._held:
            return
        self._held = False
        key = self.path.parent.resolve() / self.path.name
        with _GUARD:
            fd, count, handover = _HELD[key]
            if count > 1:
                _HELD[key] = (fd, count - 1, handover)
                return
            del _HELD[key]
            os.close(fd)  # closing the only descriptor drops the flock


def _write_holder(fd: int) -> None:
    text = (
        f"pid {os.getpid()} on {socket.gethostname()}, "
        f"since {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
    )
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text.encode())
    except OSError:
        pass  # the lock holds without its note (e.g. a full disk)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return f"held by {text}" if text else "held by another process"
