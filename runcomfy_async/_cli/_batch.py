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
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from .._batch import BatchItem, BatchResult, BatchRunner
from .._config import PollSettings
from .._exceptions import AuthenticationError, ConfigError, RunComfyError
from .._journal import JournalError
from .._journal_lock import JournalLock
from ._args import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, parse_sets
from ._batch_results import failure_reasons, resume_command, write_results
from ._commands import SANDBOX_STATE
from ._gallery import write_gallery
from ._inputs import InputLine, ScanReport, detect_format, read_inputs, scan
from ._inputs_common import InputError
from ._parser import DOWNLOAD_TIMEOUT, OUTAGE_TOLERANCE
from ._progress import Progress

__all__ = ["run_batch"]

FOLLOW_ERROR_LIMIT = 6
"""Failed checks in a row after which the poller hands a job back to the batch runner."""


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


def _results(out: Path) -> Iterator[dict[str, Any]]:
    with open(out / "results.jsonl", "rb") as fh:
        for line in fh:
            yield msgspec.json.decode(line)


def run_batch(args: argparse.Namespace, open_client: Any) -> int:
    """Run the batch command; returns the exit code.

    The output folder is locked first (one run per ``--out``), then the input is checked in
    full (one streaming pass) before anything is submitted.

    Raises:
        UsageError: bad options, an unreadable or invalid input, or a journal that cannot be
            used (another run holds it, another format, another batch).
    """
    try:
        return _run_batch(args, open_client)
    except (InputError, JournalError) as exc:
        raise UsageError(str(exc)) from None


def _run_batch(args: argparse.Namespace, open_client: Any) -> int:
    if args.max_in_flight < 1:
        raise UsageError("--max-in-flight must be >= 1")
    if args.outage_tolerance < 0 or args.download_timeout <= 0:
        raise UsageError("--outage-tolerance must be >= 0 and --download-timeout > 0")
    out = Path(args.out)
    journal_path = out / "journal.jsonl"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    with JournalLock(journal_path, handover=True):  # held from here, then by the runner
        if journal_path.exists() and not args.resume and args.sandbox:
            # A sandbox run without --resume starts afresh (the README's command can be run
            # twice); the old run's journal and emulator jobs are kept aside.
            journal_path.replace(out / "journal.prev.jsonl")
            with contextlib.suppress(FileNotFoundError):
                (out / SANDBOX_STATE).replace(out / f"prev-{SANDBOX_STATE}")
        if args.sandbox and args.resume and journal_path.exists():
            _sandbox_state_kept(args, out)
        if journal_path.exists() and not args.resume:
            raise UsageError(
                f"{out} already holds a batch journal: pass --resume to continue it, "
                "or choose another --out"
            )
        shared = parse_sets(args.model, args.set)
        with _spooled(args.input) as path:
            fmt = detect_format(path if args.input != "-" else "-", args.format)
            name = "<stdin>" if args.input == "-" else None

            def read() -> Iterator[InputLine]:
                return read_inputs(path, model_id=args.model, shared=shared, fmt=fmt,
                                   source_name=name)  # fmt: skip

            report = scan(path, model_id=args.model, shared=shared, fmt=fmt, source_name=name)
            _prescan(args, report)
            args.invalid_skipped = report.invalid if args.on_invalid == "skip" else 0
            if getattr(args, "dry_run", False):
                from ._cost import dry_run

                return asyncio.run(dry_run(args, open_client, read, report))
            return asyncio.run(
                _drive(args, open_client, read, shared, report.total, out, journal_path)
            )


def _sandbox_state_kept(args: argparse.Namespace, out: Path) -> None:
    """Refuse a sandbox resume whose emulator jobs were not kept (a folder from an older run).

    Raises:
        UsageError: no emulator state in ``out``; the message gives a command that works.
    """
    if (out / SANDBOX_STATE).exists():
        return
    fresh = _hint(args).removesuffix(" --resume")
    raise UsageError(
        f"{out} holds no {SANDBOX_STATE}: the sandbox jobs of that run are gone, so it "
        f"cannot be resumed. Start it afresh (nothing is paid in the sandbox): {fresh}"
    )


def _prescan(args: argparse.Namespace, report: ScanReport) -> None:
    """Refuse an empty input, duplicate keys, and (unless skipped) invalid lines."""
    if report.total == 0:
        raise UsageError(f"{args.input}: no inputs (the file is empty)")
    if not report.invalid:
        return
    for source, reason in report.errors:
        print(f"{source}: {reason}", file=sys.stderr)
    if len(report.errors) < report.invalid:
        print(f"+{report.invalid - len(report.errors):,} more", file=sys.stderr)
    if report.duplicate_keys:
        raise UsageError(
            f"{report.duplicate_keys} inputs repeat a _key of an earlier one; keys name the "
            "outputs and the journal's records, so they must be unique. Nothing was submitted"
        )
    if args.on_invalid == "fail":
        raise UsageError(
            f"{report.invalid} of {report.total} inputs are invalid; nothing was "
            "submitted. Fix them, or pass --on-invalid skip"
        )
    print(f"skipping {report.invalid:,} invalid line(s); running the others", file=sys.stderr)


async def _drive(
    args: argparse.Namespace,
    open_client: Any,
    read: Callable[[], Iterator[InputLine]],
    shared: dict[str, Any],
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
    stopped, runner, requests = False, None, 0
    guard: Any = None
    error: BaseException | None = None
    # The poller gives a job up after a few failed checks; the runner then re-attaches it
    # for as long as --outage-tolerance says, so that limit is one of time, not of tries.
    args.poll = PollSettings(error_limit=FOLLOW_ERROR_LIMIT)
    try:
        async with open_client(args) as client:
            # The runner cancels (and journals) queued jobs itself; a cancel the journal
            # never saw would turn into 'cancelled' on resume and the input would never run.
            client.cancel_on_error = False
            items: Iterator[BatchItem] = (_item(line) for line in read())
            if getattr(args, "max_cost", None) is not None:
                from ._cost import CostGuard, model_price

                guard = CostGuard(args.max_cost, await model_price(client, args.model))
                items = guard.items(items)
            runner = BatchRunner(
                client,
                args.model,
                items,
                max_in_flight=args.max_in_flight,
                journal=journal_path,
                fsync=args.fsync,
                download_to=None if args.no_download else out,
                resubmit_uncertain=args.resubmit_uncertain,
                retry_failed=args.retry_failed,
                download_timeout=args.download_timeout,
                shared=shared,
                accept_changed_inputs=args.accept_changed_inputs,
                outage_tolerance=args.outage_tolerance,
            )
            progress = Progress(args.progress, total=total, runner=runner, client=client)
            with progress:
                stopped = await _consume(
                    runner, progress, interrupted, guard.observe if guard else None
                )
                if stopped:
                    progress.note("interrupted: cancelling queued jobs, saving the journal...")
                    cancelled = await runner.cancel_queued()
                    progress.note(f"cancelled {cancelled} queued job(s) on the server")
                await runner.aclose()
            requests = sum(client.requests.values())
    except JournalError:
        raise  # nothing was done: the plain usage error says it all
    except (RunComfyError, OSError) as exc:
        if runner is None and isinstance(exc, ConfigError):
            raise  # e.g. no token: nothing was done, and the command says it in its words
        error = exc
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    if guard is not None:
        guard.note()
    halted = runner.halted if runner is not None else None
    counts = _write_outputs(args, read, out, journal_path, started, runner, requests)
    problem = error or halted
    if problem is not None:
        print(f"error: {_one_line(problem)}", file=sys.stderr)
    unfinished = counts is None or bool(set(counts) & {"pending", "submitted", "download_failed"})
    if stopped or problem is not None or unfinished:
        print(f"\nnot finished. Resume with:\n  {_hint(args)}", file=sys.stderr)
    if stopped:
        return EXIT_INTERRUPTED
    if isinstance(problem, (AuthenticationError, ConfigError)) or (
        runner is not None and runner.halt_reason == "account"
    ):
        return EXIT_CONFIG
    if problem is not None or counts is None:
        return EXIT_FAILED
    return (
        EXIT_OK
        if _all_valid_succeeded(counts, getattr(args, "invalid_skipped", 0))
        else EXIT_FAILED
    )


def _all_valid_succeeded(counts: collections.Counter[str], skipped: int) -> bool:
    """Whether every input succeeded, but the invalid lines ``--on-invalid skip`` left out."""
    return set(counts) <= {"succeeded", "invalid"} and counts["invalid"] <= skipped


def _item(line: InputLine) -> BatchItem:
    return BatchItem(
        index=line.index, inputs=line.inputs, key=line.key, error=line.error, source=line.source
    )


def _write_outputs(
    args: argparse.Namespace,
    read: Callable[[], Iterator[InputLine]],
    out: Path,
    journal_path: Path,
    started: float,
    runner: BatchRunner | None,
    requests: int,
) -> collections.Counter[str] | None:
    """results.jsonl, index.html and the summary, whatever way the run ended."""
    try:
        counts = write_results(journal_path, out, read(), args.model)
        submitted = runner.counts["submitted"] if runner is not None else 0
        costs = [r["cost"] for r in _results(out) if isinstance(r.get("cost"), (int, float))]
        write_gallery(out, _results(out), title=f"{args.model}: {args.input}", summary={
            "total": sum(counts.values()), **counts,
            "wall_s": round(time.monotonic() - started, 1),
            "requests_per_job": round(requests / max(1, submitted), 2),
            **({"cost_usd": round(sum(costs), 6)} if costs else {}),
        })  # fmt: skip
    except OSError as exc:
        print(f"error: could not write the results in {out}: {_one_line(exc)}", file=sys.stderr)
        return None
    if runner is not None:
        Progress.summary(
            counts,
            failure_reasons(out),
            runner=runner,
            requests=requests,
            wall=time.monotonic() - started,
            out=out,
            invalid_skipped=getattr(args, "invalid_skipped", 0),
        )
        if costs:
            print(
                f"cost: ${sum(costs):.4f} as reported by the API for {len(costs)} job(s)",
                file=sys.stderr,
            )
    return counts


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _hint(args: argparse.Namespace) -> str:
    defaults = argparse.Namespace(
        progress="auto", on_invalid="fail", max_in_flight=64,
        outage_tolerance=OUTAGE_TOLERANCE, download_timeout=DOWNLOAD_TIMEOUT,
    )  # fmt: skip
    command = resume_command(args, defaults)
    if args.input == "-":
        command = "... | " + command
    return command


async def _consume(
    runner: BatchRunner,
    progress: Progress,
    interrupted: asyncio.Event,
    on_result: Callable[[BatchResult], object] | None = None,
) -> bool:
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
            if on_result is not None:
                on_result(res)
    finally:
        stop.cancel()
