"""``runcomfy-async batch``: a file of inputs in, a folder of outputs and a record of every job out.

The folder holds ``journal.jsonl`` (every state change, for ``--resume``), ``results.jsonl``
(one line per input), the downloaded outputs and ``index.html`` (a gallery).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from .._batch import BatchResult, BatchRunner
from .._journal import Journal
from ._args import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, parse_sets
from ._gallery import write_gallery
from ._inputs import detect_format, read_inputs, scan
from ._progress import Progress

__all__ = ["run_batch"]


@contextlib.contextmanager
def _spooled(path: str) -> Iterator[str]:
    """Stdin cannot be read twice (scan, then run): copy it to a temp file first."""
    if path != "-":
        yield path
        return
    with tempfile.NamedTemporaryFile(prefix="runcomfy-stdin-", delete=False) as tmp:
        shutil.copyfileobj(sys.stdin.buffer, tmp)
    try:
        yield tmp.name
    finally:
        os.unlink(tmp.name)


def _resume_command(args: argparse.Namespace) -> str:
    """The command line to resume with: this one plus --resume, never with a token in it."""
    raw = list(sys.argv[1:]) if sys.argv[1:] and sys.argv[1] == "batch" else ["batch"]
    argv: list[str] = []
    skip = False
    for arg in raw:
        if skip:
            skip = False
            argv.append('"$RUNCOMFY_API_TOKEN"')
            continue
        if arg == "--token":
            skip = True
        elif arg.startswith("--token="):
            arg = '--token="$RUNCOMFY_API_TOKEN"'
        argv.append(arg)
    if "--resume" not in argv:
        argv.append("--resume")
    quoted = (a if "$RUNCOMFY_API_TOKEN" in a else shlex.quote(a) for a in argv)
    return "runcomfy-async " + " ".join(quoted)


def write_results(journal_path: Path, out: Path) -> collections.Counter[str]:
    """Rewrite ``results.jsonl`` from the journal's terminal records; count them by status."""
    counts: collections.Counter[str] = collections.Counter()
    target = out / "results.jsonl"
    fd, tmp = tempfile.mkstemp(prefix=".results-", dir=out)
    with os.fdopen(fd, "wb") as fh:
        for record in Journal.records(journal_path):
            if record.get("e") != "done":
                continue
            record.pop("e")
            counts[str(record.get("status"))] += 1
            fh.write(msgspec.json.encode(record) + b"\n")
    os.replace(tmp, target)
    return counts


def _results(out: Path) -> Iterator[dict[str, Any]]:
    with open(out / "results.jsonl", "rb") as fh:
        for line in fh:
            yield msgspec.json.decode(line)


def run_batch(args: argparse.Namespace, open_client: Any) -> int:
    """Run the batch command; returns the exit code.

    The input is checked in full (one streaming pass) before anything is submitted.
    """
    out = Path(args.out)
    journal_path = out / "journal.jsonl"
    if journal_path.exists() and not args.resume and args.sandbox:
        # Sandbox jobs vanish with their in-process emulator: start afresh, keep the old run.
        journal_path.replace(out / "journal.prev.jsonl")
    if journal_path.exists() and not args.resume:
        raise UsageError(
            f"{out} already holds a batch journal: pass --resume to continue it, "
            "or choose another --out"
        )
    if args.max_in_flight < 1:
        raise UsageError("--max-in-flight must be >= 1")
    shared = parse_sets(args.model, args.set)
    with _spooled(args.input) as path:
        fmt = detect_format(path if args.input != "-" else "-", args.format)
        name = "<stdin>" if args.input == "-" else None
        report = scan(path, model_id=args.model, shared=shared, fmt=fmt, source_name=name)
        if report.total == 0:
            raise UsageError(f"{args.input}: no inputs (the file is empty)")
        if report.invalid:
            for source, reason in report.errors:
                print(f"{source}: {reason}", file=sys.stderr)
            if len(report.errors) < report.invalid:
                print(f"... and {report.invalid - len(report.errors)} more", file=sys.stderr)
            if args.on_invalid == "fail":
                raise UsageError(
                    f"{report.invalid} of {report.total} inputs are invalid; nothing was "
                    "submitted. Fix them, or pass --on-invalid skip"
                )
        out.mkdir(parents=True, exist_ok=True)
        lines = read_inputs(path, model_id=args.model, shared=shared, fmt=fmt, source_name=name)
        return asyncio.run(_drive(args, open_client, lines, report.total, out, journal_path))


async def _drive(
    args: argparse.Namespace,
    open_client: Any,
    lines: Any,
    total: int,
    out: Path,
    journal_path: Path,
) -> int:
    started = time.monotonic()
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        loop.add_signal_handler(signal.SIGTERM, interrupted.set)
    try:
        async with open_client(args) as client:
            runner: BatchRunner = client.map(
                args.model,
                lines,
                max_in_flight=args.max_in_flight,
                journal=journal_path,
                fsync=args.fsync,
                download_to=None if args.no_download else out,
                resubmit_uncertain=args.resubmit_uncertain,
            )
            progress = Progress(args.progress, total=total, runner=runner, client=client)
            with progress:
                stopped = await _consume(runner, progress, interrupted)
                if stopped:
                    progress.note("interrupted: cancelling queued jobs, saving the journal...")
                    cancelled = await runner.cancel_queued()
                    progress.note(f"cancelled {cancelled} queued job(s) on the server")
                await runner.aclose()
            requests = sum(client.requests.values())
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    counts = write_results(journal_path, out)
    write_gallery(out, _results(out), title=f"{args.model}: {args.input}", summary={
        "total": sum(counts.values()), **counts,
        "wall_s": round(time.monotonic() - started, 1),
        "requests_per_job": round(requests / max(1, runner.counts["submitted"]), 2),
    })  # fmt: skip
    Progress.summary(counts, runner, requests, time.monotonic() - started, out)
    if stopped:
        print(f"\nstopped. Resume with:\n  {_resume_command(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if set(counts) <= {"succeeded"} else EXIT_FAILED


async def _consume(runner: BatchRunner, progress: Progress, interrupted: asyncio.Event) -> bool:
    """Take results until the batch ends (False) or the user interrupts (True)."""
    results = runner.__aiter__()
    stop = asyncio.ensure_future(interrupted.wait())
    try:
        while True:
            nxt: asyncio.Future[BatchResult] = asyncio.ensure_future(results.__anext__())
            either: set[asyncio.Future[Any]] = {nxt, stop}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                runner.stop()
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
                return True
            try:
                res = nxt.result()
            except StopAsyncIteration:
                return False
            progress.advance(res)
    finally:
        stop.cancel()
