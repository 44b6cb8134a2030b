"""The batch journal: an append-only JSONL record of every state change, and its replay.

Every change is written (and flushed) *before* it is acted on, so a batch killed at any
instant can be resumed without paying twice. Records are a msgspec tagged union (the ``"e"``
field names the kind), decoded once when the journal is replayed:

* ``run`` opens every run: the format version and what defines the batch besides its inputs
  (the model, the shared fields). A resume compares them with the last run's.
* ``submitting`` is written before a submit is sent. If no ``submitted`` follows, the submit
  may or may not have reached the server: on resume the input is reported ``uncertain`` and
  not resubmitted unless the user asks.
* ``submitted`` carries the request id: on resume the job is re-attached and followed.
* ``released`` says the submit provably created no job, or the job was cancelled while
  still queued (never ran, never billed): on resume it is submitted afresh.
* ``done`` holds the input's latest final result (the line results.jsonl shows); a later
  ``done`` of the same input (a re-download, a ``--retry-failed``) replaces it.

A kill can tear the last line in half. Replay skips a line that does not decode, and
appending first terminates such a line, so a torn record never swallows the next one.

Journals of the first format (no ``run`` record, inputs identified by their line number) are
refused with a message: their identities cannot be matched to this version's safely.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from ._batch_types import BatchResult
from ._exceptions import RunComfyError
from ._states import BATCH_STATUSES, BatchStatus

__all__ = [
    "FORMAT_VERSION",
    "Done",
    "Journal",
    "JournalError",
    "Record",
    "Released",
    "ResumeState",
    "Run",
    "Submitted",
    "Submitting",
    "changes",
]

logger = logging.getLogger("runcomfy_async")

FORMAT_VERSION = 2
"""The journal format this version writes and reads."""


class JournalError(RunComfyError):
    """A batch journal cannot be used: held by another run, of an old format, or another batch."""


class _Record(msgspec.Struct, tag_field="e", kw_only=True, omit_defaults=True):
    """Base of the journal's records: ``"e"`` holds the record's kind."""


class Run(_Record, tag="run"):
    """A run started: the format, and what defines the batch besides its inputs."""

    version: int
    model: str | None = None
    shared: dict[str, Any] = msgspec.field(default_factory=dict)
    at: str = ""


class Submitting(_Record, tag="submitting"):
    """A submit is about to leave for the server."""

    id: str
    index: int
    model: str
    input: dict[str, Any]
    key: str | None = None
    at: str = ""


class Submitted(_Record, tag="submitted"):
    """The server accepted a submit: the job exists (and is billed)."""

    id: str
    request_id: str


class Released(_Record, tag="released"):
    """No job exists for the input (refused submit, or cancelled while queued)."""

    id: str
    request_id: str | None = None


class Done(_Record, tag="done"):
    """The input's final result, as results.jsonl shows it."""

    id: str
    result: BatchResult


Record = Run | Submitting | Submitted | Released | Done
"""Any journal record."""

# Built once: the union's tags are resolved at construction, not per line.
_DECODER = msgspec.json.Decoder(Record)
_ENCODER = msgspec.json.Encoder()


@dataclass
class ResumeState:
    """What a journal says about each input, for resuming.

    Final results are not held in memory (a journal may record millions): only each input's
    latest status and where its record sits in the file; :meth:`result` reads it back.

    Attributes:
        run: the last ``run`` record (``None`` for an empty journal).
        submitted: inputs whose job exists: identity -> request id.
        uncertain: inputs whose submit was sent but whose answer was never recorded.
        sent: the ``submitting`` record of every input in ``submitted`` or ``uncertain``
            (what was sent, for reporting a job whose input is gone).
        records: how many records were read.
        path: the journal read.
    """

    run: Run | None = None
    submitted: dict[str, str] = field(default_factory=dict)
    uncertain: set[str] = field(default_factory=set)
    sent: dict[str, Submitting] = field(default_factory=dict)
    records: int = 0
    path: Path | None = None
    # identity -> offset of its latest done record * 8 + its status's place in BATCH_STATUSES:
    # one small int per input, as a journal may hold millions.
    _done: dict[str, int] = field(default_factory=dict, repr=False)
    _fh: BinaryIO | None = field(default=None, repr=False)

    @property
    def done(self) -> KeysView[str]:
        """The inputs with a final result."""
        return self._done.keys()

    def status(self, ident: str) -> BatchStatus | None:
        """The latest final status of input ``ident``, or ``None`` if it has none."""
        code = self._done.get(ident)
        return None if code is None else BATCH_STATUSES[code & 7]

    def apply(self, record: Record, offset: int = -1) -> None:
        """Fold one journal record (found at byte ``offset`` of the file) into the state."""
        if isinstance(record, Run):
            self.run = record
        elif isinstance(record, Submitting):
            self.uncertain.add(record.id)
            self.submitted.pop(record.id, None)
            self.sent[record.id] = record
        elif isinstance(record, Submitted):
            self.uncertain.discard(record.id)
            self.submitted[record.id] = record.request_id
        elif isinstance(record, Released):
            self.uncertain.discard(record.id)
            self.submitted.pop(record.id, None)
            self.sent.pop(record.id, None)
        else:
            self.uncertain.discard(record.id)
            self.submitted.pop(record.id, None)
            self.sent.pop(record.id, None)
            self._done[record.id] = max(offset, 0) << 3 | BATCH_STATUSES.index(record.result.status)

    def result(self, ident: str) -> BatchResult | None:
        """The latest final result of input ``ident``, read back from the journal."""
        code = self._done.get(ident)
        if code is None or self.path is None:
            return None
        offset = code >> 3
        if self._fh is None:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._fh.seek(offset)
        record = _DECODER.decode(self._fh.readline())
        return record.result if isinstance(record, Done) else None

    def close(self) -> None:
        """Close the file :meth:`result` reads from (idempotent)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()


class Journal:
    """An append-only JSONL file, one record per line, flushed after every record.

    Args:
        path: the journal file (created if missing; appended to if present).
        fsync: also ``fsync`` after every record (survives power loss, costs a disk sync).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self._fh: BinaryIO | None = None

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open for appending; terminate a torn last line left by a killed run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab")  # noqa: SIM115 - kept open for the journal's lifetime
        if fh.tell() > 0:
            with open(self.path, "rb") as tail:
                tail.seek(-1, os.SEEK_END)
                if tail.read(1) != b"\n":
                    fh.write(b"\n")
        self._fh = fh

    def close(self) -> None:
        """Flush and close (idempotent)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            finally:
                fh.close()

    def write(self, record: Record) -> None:
        """Append one record and flush it to the OS (and to disk with ``fsync``).

        A closed journal is opened again for the write (e.g. after a batch stopped).

        Raises:
            OSError: the record could not be written (e.g. the disk is full).
        """
        if self._fh is None:
            self.open()
        assert self._fh is not None
        self._fh.write(_ENCODER.encode(record) + b"\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    @staticmethod
    def records(path: str | os.PathLike[str]) -> Iterator[Record]:
        """Stream the decodable records of a journal file (torn lines are skipped).

        Raises:
            JournalError: the journal is of the first format (see the module's docstring).
        """
        for _offset, record in Journal._scan(path):
            yield record

    @staticmethod
    def _scan(path: str | os.PathLike[str]) -> Iterator[tuple[int, Record]]:
        """Each decodable record with the byte offset of its line."""
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            return
        with fh:
            first = True
            offset = 0
            for line in fh:
                at, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                try:
                    record = _DECODER.decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                    if first and _old_format(line):
                        raise JournalError(_OLD_FORMAT.format(path=path)) from None
                    logger.warning("journal %s: skipping a torn or corrupt line", path)
                    continue
                if first and not isinstance(record, Run):
                    raise JournalError(_OLD_FORMAT.format(path=path))
                first = False
                yield at, record

    @classmethod
    def replay(cls, path: str | os.PathLike[str]) -> ResumeState:
        """Read a journal into a :class:`ResumeState` (an empty one if the file is missing).

        Raises:
            JournalError: the journal is of another format version.
        """
        state = ResumeState(path=Path(path))
        for offset, record in cls._scan(path):
            state.records += 1
            state.apply(record, offset)
            if isinstance(record, Run) and record.version != FORMAT_VERSION:
                raise JournalError(
                    f"{path} was written in journal format {record.version}; this version "
                    f"reads format {FORMAT_VERSION}. Finish it with the version that wrote it, "
                    "or start a new --out"
                )
        return state


_OLD_FORMAT = (
    "{path} was written by an earlier runcomfy-async, which identified inputs by line number; "
    "this version identifies them by key or content and cannot match them safely. Finish that "
    "batch with the earlier version, or start a new --out"
)


def _old_format(line: bytes) -> bool:
    """Whether an undecodable first line is a record of the first format."""
    try:
        value = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("e") in ("submitting", "submitted", "done")


def changes(previous: Run, model: str | None, shared: Mapping[str, Any]) -> list[str]:
    """What differs between the journal's last run and this one, in the CLI's words."""
    found: list[str] = []
    if previous.model != model:
        found.append(f"--model was {previous.model}, now {model}")
    for name in sorted(set(previous.shared) | set(shared)):
        before, now = previous.shared.get(name), shared.get(name)
        if before != now:
            was = "unset" if name not in previous.shared else f"{name}={_show(before)}"
            new = "unset" if name not in shared else f"{name}={_show(now)}"
            found.append(f"--set {name}: was {was}, now {new}")
    return found


def _show(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()
