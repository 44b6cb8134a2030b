"""The emulator's jobs on disk, so a new emulator process picks up where the last one stopped.

The file is JSON Lines: a header, then one line per event. A job line holds everything its
timeline and outputs derive from (id, model, creation time in wall-clock terms, duration, fate,
number of outputs, and the inputs when they are small); a cancel line holds the wall-clock time
of a successful cancel; a ports line records where the listeners were bound. Events are
appended (and flushed) as they happen, which costs one short write per submit, so a killed
process loses at most a partly written last line (skipped on load). :meth:`StateFile.detach`
rewrites the file as a compact snapshot, atomically (temporary file, then rename).

Loading replays the events in time order through the scheduler, so queued jobs start exactly
when their slot freed, even while no emulator was running: a job that should have finished
during the gap is finished. Output images derive from the request id and index alone, so the
loaded jobs' outputs are served, byte for byte, by the new process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec

from ._jobs import FakeJob

__all__ = ["STATE_VERSION", "StateFile"]

STATE_VERSION = 1
"""The version written in the header; a file with another version is refused."""

MAX_STORED_INPUTS = 64 * 1024
"""Inputs whose JSON is larger than this many bytes (e.g. inline images) are not stored; a
loaded job then has empty ``inputs``. Outputs never depend on them beyond ``num_images``."""


class _Header(msgspec.Struct, tag="header"):
    version: int


class _Job(msgspec.Struct, tag="job"):
    id: str
    model: str
    created_at: float  # epoch seconds
    duration: float
    fail: bool
    n: int
    inputs: msgspec.Raw  # the JSON object encoded once, or null (decoded on replay)


class _Cancel(msgspec.Struct, tag="cancel"):
    id: str
    at: float  # epoch seconds


class _Ports(msgspec.Struct, tag="ports"):
    api: int
    output: int


_Line = _Header | _Job | _Cancel | _Ports
_decode_line = msgspec.json.Decoder(_Line).decode  # built once: a load decodes every line
_encode = msgspec.json.encode


class JobSink(Protocol):
    """What the state file replays loaded jobs into (the emulator's model API)."""

    def restore_job(
        self,
        *,
        request_id: str,
        model_id: str,
        inputs: dict[str, Any],
        created_at: datetime,
        created: float,
        duration: float,
        will_fail: bool,
        num_images: int,
    ) -> FakeJob:
        """Re-create one job at its original (monotonic) creation time."""
        ...

    def restore_cancel(self, job: FakeJob, at: float) -> None:
        """Replay a cancel at monotonic time ``at``."""
        ...


class StateFile:
    """The append-only state file of one emulator.

    Args:
        path: the file; created (with its folder) on first use.

    Attributes:
        path: the file.
        skipped_lines: lines that could not be read on load (e.g. a torn last line).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.skipped_lines = 0
        self._out: IO[bytes] | None = None

    def load(self, sink: JobSink) -> tuple[int, int] | None:
        """Replay the file's jobs and cancels into ``sink``.

        Args:
            sink: the model API to restore jobs into.

        Returns:
            The last recorded ``(api_port, output_port)``, or ``None`` (no file, or no ports).

        Raises:
            ValueError: the file exists but is not an emulator state file of this version.
        """
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return None
        if not lines:
            return None
        try:
            header = _decode_line(lines[0])
        except (msgspec.DecodeError, msgspec.ValidationError):
            header = None
        if not isinstance(header, _Header) or header.version != STATE_VERSION:
            raise ValueError(f"{self.path} is not an emulator state file (version {STATE_VERSION})")
        events: list[tuple[float, int, _Job | _Cancel]] = []
        ports: tuple[int, int] | None = None
        for seq, raw in enumerate(lines[1:]):
            try:
                line = _decode_line(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.skipped_lines += 1
                continue
            if isinstance(line, _Job):
                events.append((line.created_at, seq, line))
            elif isinstance(line, _Cancel):
                events.append((line.at, seq, line))
            elif isinstance(line, _Ports):
                ports = (line.api, line.output)
        events.sort(key=lambda e: (e[0], e[1]))
        self._replay(sink, [e[2] for e in events])
        return ports

    @staticmethod
    def _replay(sink: JobSink, events: Iterable[_Job | _Cancel]) -> None:
        to_monotonic = time.monotonic() - time.time()
        jobs: dict[str, FakeJob] = {}
        for event in events:
            if isinstance(event, _Job):
                if event.id in jobs:
                    continue  # a snapshot written over a log never repeats a job; be safe
                jobs[event.id] = sink.restore_job(
                    request_id=event.id,
                    model_id=event.model,
                    inputs=_inputs(event.inputs),
                    created_at=datetime.fromtimestamp(event.created_at, timezone.utc),
                    created=event.created_at + to_monotonic,
                    duration=event.duration,
                    will_fail=event.fail,
                    num_images=event.n,
                )
            else:
                job = jobs.get(event.id)
                if job is not None and job.cancelled_at is None:
                    sink.restore_cancel(job, event.at + to_monotonic)

    # ----------------------------------------------------------------------------------- writing

    def attach(self, api_port: int, output_port: int) -> None:
        """Open the file for appending (creating it with a header) and record the ports.

        Args:
            api_port: the bound API port.
            output_port: the bound output port.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self.path.stat().st_size if self.path.exists() else 0
        torn = size > 0 and _last_byte(self.path) != b"\n"
        self._out = open(self.path, "ab")  # noqa: SIM115 - held open until detach()
        if size == 0:
            self._write(_Header(STATE_VERSION))
        elif torn:  # a killed writer left half a line: end it, so ours stays readable
            self._out.write(b"\n")
        self._write(_Ports(api_port, output_port))

    def job_created(self, job: FakeJob) -> None:
        """Append a new job (no-op while detached)."""
        if self._out is not None:
            self._write(_job_line(job))

    def job_cancelled(self, job: FakeJob) -> None:
        """Append a successful cancel (no-op while detached)."""
        if self._out is not None and job.cancelled_at is not None:
            self._write(_cancel_line(job, job.cancelled_at))

    def _write(self, line: _Line) -> None:
        assert self._out is not None
        self._out.write(_encode(line) + b"\n")
        self._out.flush()

    def detach(self, jobs: Iterable[FakeJob], api_port: int, output_port: int) -> None:
        """Close the file after rewriting it as a compact snapshot of ``jobs``, atomically.

        Args:
            jobs: every job the emulator holds.
            api_port: the API port to record.
            output_port: the output port to record.
        """
        if self._out is not None:
            self._out.close()
            self._out = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(_encode(_Header(STATE_VERSION)) + b"\n")
            out.write(_encode(_Ports(api_port, output_port)) + b"\n")
            cancels = []
            for job in jobs:
                out.write(_encode(_job_line(job)) + b"\n")
                if job.cancelled_at is not None:
                    cancels.append(_cancel_line(job, job.cancelled_at))
            for cancel in cancels:
                out.write(_encode(cancel) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _epoch(job: FakeJob, monotonic: float) -> float:
    """A monotonic instant of ``job``'s life in epoch seconds."""
    return job.created_at.timestamp() + (monotonic - job.created)


def _inputs(raw: msgspec.Raw) -> dict[str, Any]:
    """Decode stored inputs; anything but a JSON object (e.g. null) gives ``{}``."""
    try:
        inputs = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {}
    return inputs if isinstance(inputs, dict) else {}


def _job_line(job: FakeJob) -> _Job:
    encoded = _encode(job.inputs)
    inputs = msgspec.Raw(encoded if len(encoded) <= MAX_STORED_INPUTS else b"null")
    return _Job(
        id=job.request_id,
        model=job.model_id,
        created_at=job.created_at.timestamp(),
        duration=job.duration,
        fail=job.will_fail,
        n=job.num_images,
        inputs=inputs,
    )


def _cancel_line(job: FakeJob, cancelled_at: float) -> _Cancel:
    return _Cancel(id=job.request_id, at=_epoch(job, cancelled_at))
