"""The batch journal: an append-only JSONL record of every state change, and its replay.

Every change is written (and flushed) *before* it is acted on, so a batch killed at any
instant can be resumed without paying twice:

* ``submitting`` is written before a submit is sent. If no ``submitted`` follows, the submit
  may or may not have reached the server: on resume the input is reported ``uncertain`` and
  not resubmitted unless the user asks.
* ``submitted`` carries the request id: on resume the job is re-attached and polled.
* ``released`` says the submit provably created no job, or the job was cancelled while
  still queued (never ran, never billed): on resume it is submitted afresh.
* ``done`` is the input's one terminal record (the same line results.jsonl holds).

A kill can tear the last line in half. Replay skips a line that does not decode, and
appending first terminates such a line, so a torn record never swallows the next one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Journal", "ResumeState", "input_id"]

logger = logging.getLogger("runcomfy_async")

_DECODER = msgspec.json.Decoder(dict[str, Any])
_ENCODER = msgspec.json.Encoder(order="sorted")


def input_id(model_id: str, inputs: Mapping[str, Any], index: int, key: str | None) -> str:
    """The identity of one batch input: the user's key, else a hash of model, inputs and index.

    The index is part of the hash so that the same prompt on two lines is two inputs.
    """
    if key is not None:
        return f"k:{key}"
    digest = hashlib.sha256()
    digest.update(model_id.encode())
    digest.update(b"\0")
    digest.update(_ENCODER.encode(inputs))
    digest.update(b"\0%d" % index)
    return "h:" + digest.hexdigest()[:24]


@dataclass
class ResumeState:
    """What a journal says about each input, for resuming.

    Attributes:
        done: inputs with their terminal record.
        submitted: inputs whose job exists: input id -> request id.
        uncertain: inputs whose submit was sent but whose answer was never recorded.
        records: how many records were read.
    """

    done: set[str] = field(default_factory=set)
    submitted: dict[str, str] = field(default_factory=dict)
    uncertain: set[str] = field(default_factory=set)
    records: int = 0

    def apply(self, record: Mapping[str, Any]) -> None:
        """Fold one journal record into the state."""
        kind, ident = record.get("e"), record.get("id")
        if not isinstance(ident, str):
            return
        if kind == "submitting":
            self.uncertain.add(ident)
        elif kind == "submitted":
            self.uncertain.discard(ident)
            rid = record.get("request_id")
            if isinstance(rid, str):
                self.submitted[ident] = rid
        elif kind == "released":
            self.uncertain.discard(ident)
            self.submitted.pop(ident, None)
        elif kind == "done":
            self.uncertain.discard(ident)
            self.submitted.pop(ident, None)
            self.done.add(ident)


class Journal:
    """An append-only JSONL file, one record per line, flushed after every record.

    Args:
        path: the journal file (created if missing; appended to if present).
        fsync: also ``fsync`` after every record (survives power loss, costs a disk sync).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self._fh: Any = None

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
        if self._fh is not None:
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record and flush it to the OS (and to disk with ``fsync``).

        A closed journal is opened again for the write (e.g. after a batch stopped).
        """
        if self._fh is None:
            self.open()
        self._fh.write(_ENCODER.encode(record) + b"\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    @staticmethod
    def records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
        """Stream the decodable records of a journal file (torn lines are skipped)."""
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            return
        with fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    yield _DECODER.decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                    logger.warning("journal %s: skipping a torn or corrupt line", path)

    @classmethod
    def replay(cls, path: str | os.PathLike[str]) -> ResumeState:
        """Read a journal into a :class:`ResumeState` (an empty one if the file is missing)."""
        state = ResumeState()
        for record in cls.records(path):
            state.records += 1
            state.apply(record)
        return state
