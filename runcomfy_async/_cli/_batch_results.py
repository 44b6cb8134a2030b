"""What a ``batch`` run leaves behind on every exit: results.jsonl and the resume command.

``results.jsonl`` has exactly one line per input, in input order, holding the input's latest
state: its final result from the journal, else ``submitted`` (a job exists and a resume
follows it), ``uncertain`` or ``pending`` (never submitted). It is rebuilt from the journal and
a second streaming pass over the inputs, so it is right whatever way the run ended. Journaled
jobs that match no input (the inputs changed) go to ``orphans.jsonl``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shlex
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import msgspec

from .._batch_types import BatchResult, Identities
from .._journal import Journal, ResumeState
from ._inputs import InputLine

__all__ = ["failure_reasons", "resume_command", "write_results"]

_ENCODER = msgspec.json.Encoder()


def write_results(
    journal_path: Path, out: Path, lines: Iterable[InputLine], model_id: str
) -> collections.Counter[str]:
    """Rewrite ``results.jsonl`` (and ``orphans.jsonl``); count the inputs by status.

    Raises:
        OSError: a file could not be written (the old one, if any, is left as it was).
    """
    state = Journal.replay(journal_path)
    try:
        return _write(state, out, lines, model_id)
    finally:
        state.close()


def _write(
    state: ResumeState, out: Path, lines: Iterable[InputLine], model_id: str
) -> collections.Counter[str]:
    ids = seen = Identities()
    counts: collections.Counter[str] = collections.Counter()
    with _replacing(out / "results.jsonl") as fh:
        for line in lines:
            ident = ids.of(model_id, line.inputs, line.key)
            res = _latest(state, ident, line, model_id)
            counts[res.status] += 1
            fh.write(_with_line(_ENCODER.encode(res), line.line) + b"\n")
    orphans: list[BatchResult] = []
    for ident in state.done:
        found = state.result(ident) if ident not in seen else None
        if found is not None:
            orphans.append(found)
    for ident in sorted(i for i in {*state.submitted, *state.uncertain} if i not in seen):
        sent = state.sent[ident]
        line = InputLine(sent.index, 0, sent.key, sent.input, None, "")
        orphans.append(_latest(state, ident, line, sent.model))
    target = out / "orphans.jsonl"
    if orphans or target.exists():
        with _replacing(target) as fh:
            for res in orphans:
                res.orphan = True
                fh.write(_ENCODER.encode(res) + b"\n")
    return counts


def _with_line(record: bytes, line: int) -> bytes:
    """Add ``"line"``, the input file's 1-based line (as editors number them), to a record."""
    return b'{"line":%d,' % line + record[1:] if line > 0 and record[:1] == b"{" else record


def failure_reasons(out: Path) -> collections.Counter[str]:
    """Why inputs did not succeed, as ``status: error`` by count (job ids taken out).

    Lines the pre-scan refused (``invalid`` with an ``InputValidationError``) are left out:
    the command listed them, with their line numbers, before the run.
    """
    reasons: collections.Counter[str] = collections.Counter()
    with open(out / "results.jsonl", "rb") as fh:
        for raw in fh:
            record = msgspec.json.decode(raw)
            status = record.get("status")
            if status == "succeeded":
                continue
            if status == "invalid" and record.get("error_kind") == "InputValidationError":
                continue
            why = str(record.get("error") or record.get("error_kind") or "no reason recorded")
            request_id = record.get("request_id")
            if isinstance(request_id, str) and request_id:  # so that the same error groups
                why = why.replace(f"job {request_id}: ", "").replace(request_id, "<id>")
            reasons[f"{status}: {why[:100]}"] += 1
    return reasons


def _latest(state: ResumeState, ident: str, line: InputLine, model_id: str) -> BatchResult:
    done = state.result(ident) if ident in state.done else None
    if done is not None:
        return msgspec.structs.replace(done, index=line.index, key=line.key)
    res = BatchResult(
        index=line.index, key=line.key, id=ident, model_id=model_id, input=line.inputs,
        status="pending",
    )  # fmt: skip
    rid = state.submitted.get(ident)
    if rid is not None:
        res.status, res.request_id = "submitted", rid
        res.error = "paid, not finished as far as we know: --resume follows it"
    elif ident in state.uncertain:
        res.status = "uncertain"
        res.error = "a submit was sent but its answer never arrived; the job may exist"
    elif line.error is not None:
        res.status, res.error, res.error_kind = "invalid", line.error, "InputValidationError"
    return res


class _replacing:
    """Write a file beside its target, then rename it into place (never half a file)."""

    def __init__(self, target: Path):
        self.target = target

    def __enter__(self) -> BinaryIO:
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.target.name}-", dir=self.target.parent)
        self.fh: BinaryIO = os.fdopen(fd, "wb")
        return self.fh

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.fh.close()
            if exc_type is None:
                os.replace(self.tmp, self.target)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


_SAFE_FLAGS = (
    ("format", "--format"),
    ("base_url", "--base-url"),
    ("rate", "--rate"),
    ("token_file", "--token-file"),
    ("progress", "--progress"),
    ("on_invalid", "--on-invalid"),
    ("max_in_flight", "--max-in-flight"),
    ("outage_tolerance", "--outage-tolerance"),
    ("download_timeout", "--download-timeout"),
    ("max_cost", "--max-cost"),  # a resume keeps the cap: raising it is the user's choice
)
_SWITCHES = (
    ("no_download", "--no-download"),
    ("fsync", "--fsync"),
    ("sandbox", "--sandbox"),
    ("allow_insecure", "--allow-insecure"),
    ("no_cache", "--no-cache"),
)


def resume_command(args: argparse.Namespace, defaults: argparse.Namespace) -> str:
    """The command that resumes this batch, built from the parsed options (never from argv).

    It never holds the token (a ``--token`` given on the command line is left out: the
    resumed run reads ``--token-file`` or ``$RUNCOMFY_API_TOKEN``), nor the options that
    cost money each time they are given (``--retry-failed``, ``--resubmit-uncertain``).

    Args:
        args: the parsed options of this run.
        defaults: the options' defaults (an option at its default is left out).
    """
    argv = ["runcomfy-async", "batch", args.input, "--model", args.model]
    for pair in args.set:
        argv += ["--set", pair]
    argv += ["--out", args.out]
    for name, flag in _SAFE_FLAGS:
        value = getattr(args, name, None)
        if value is not None and value != getattr(defaults, name, None):
            argv += [flag, str(value)]
    argv += [flag for name, flag in _SWITCHES if getattr(args, name, False)]
    argv.append("--resume")
    return " ".join(shlex.quote(part) for part in argv)
