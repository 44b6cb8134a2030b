"""The batch runner: many inputs in, one result per input out, resumable, never paying twice.

Shape: a producer walks the inputs (never all in memory) and submits under a bound of
``max_in_flight`` live jobs; each job's future, when it resolves, hands the job to a small
pool of finishers (:mod:`runcomfy_async._batch_finish`) that download its outputs, journal
its final record and yield it. No task per job: the client's one poller follows them all.

What stops new submits without ending the jobs already paid for (see :attr:`BatchRunner.halted`):
an account error (no balance, refused credentials), a full disk, an outage longer than the
tolerance, or :meth:`BatchRunner.stop`. The inputs not submitted stay ``pending``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ._batch_finish import Finisher, Item, is_account_error
from ._batch_types import BatchItem, BatchResult, Identities
from ._download import Downloader
from ._exceptions import (
    APIStatusError,
    ConfigError,
    InputValidationError,
    RateLimitError,
    SubmissionUncertainError,
    TransportError,
)
from ._journal import (
    FORMAT_VERSION,
    Journal,
    JournalError,
    Released,
    ResumeState,
    Run,
    Submitted,
    Submitting,
    changes,
)
from ._journal_lock import JournalLock
from ._media import paths_as_uris
from ._states import BatchStatus
from .models import ModelInput, to_payload

if TYPE_CHECKING:
    from ._base_client import BaseClient

__all__ = ["BatchItem", "BatchResult", "BatchRunner"]

logger = logging.getLogger("runcomfy_async")

SUBMIT_GRACE = 10.0
"""Seconds a stopping batch waits for a submit already on its way to be answered."""

OUTAGE_TOLERANCE = 900.0
"""Default seconds a batch keeps trying to reach the API before it leaves jobs for --resume."""


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class BatchRunner(Finisher):
    """Run one model over many inputs; iterate it for a :class:`BatchResult` per input.

    Obtain one with :meth:`AsyncClient.map`, or build it directly for the options ``map`` does
    not forward. Inputs may be an iterable or async iterable of dicts, typed model Structs,
    ``(key, inputs)`` pairs, or :class:`BatchItem` objects.

    An input is identified by its key, else by its content (model and inputs, with a count for
    exact repeats), never by its position: resuming after inserting a line changes nothing,
    and a journaled job whose input is gone is still followed and reported (``orphan``). A
    repeated key makes the second input ``invalid``.

    Example:
        >>> async with client.map(MODEL, ({"prompt": p} for p in prompts), journal="j.jsonl") as b:
        ...     async for res in b:
        ...         print(res.index, res.status, res.urls)

    Args:
        client: an open :class:`AsyncClient`.
        model: the model id (may be ``None`` when every input is a typed Struct).
        inputs: the inputs, read lazily.
        max_in_flight: the most jobs alive at once.
        ordered: yield in input order instead of completion order.
        journal: a JSONL file recording every state change; an existing journal is resumed.
            It is locked for the runner's lifetime: a second runner on it fails at once.
        fsync: ``fsync`` the journal after every record.
        download_to: a folder to download every output into. On resume, outputs that are
            missing or whose sha256 differs are downloaded again.
        resubmit_uncertain: on resume, submit again the inputs whose earlier submit may or
            may not have created a job (you may pay twice for those).
        retry_failed: on resume, submit again the inputs whose job the server reported
            failed (each costs a new job).
        max_downloads: concurrent downloads.
        download_timeout: seconds one output file may take, retries included; ``None`` means
            no limit (a host that sends one byte now and then is then never given up).
        shared: what defines the batch besides its inputs (the CLI passes its ``--set``
            fields); journaled, and compared with the journal's last run on resume.
        accept_changed_inputs: resume even though ``model`` or ``shared`` differ from the
            journal's last run (its jobs are still followed and reported as orphans).
        outage_tolerance: seconds the batch keeps trying to follow a job (or to submit) while
            the API cannot be reached, answers 5xx or refuses the credentials; beyond it, the
            job is left journaled ``submitted`` for a resume. ``None`` means no limit.

    Raises:
        JournalError: the journal is held by another run, is of an older format, or records
            another model or other shared fields (and ``accept_changed_inputs`` is false).
    """

    def __init__(
        self,
        client: BaseClient,
        model: str | None,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int = 64,
        ordered: bool = False,
        journal: str | Path | None = None,
        fsync: bool = False,
        download_to: str | Path | None = None,
        resubmit_uncertain: bool = False,
        retry_failed: bool = False,
        max_downloads: int = 8,
        download_timeout: float | None = 600.0,
        shared: Mapping[str, Any] | None = None,
        accept_changed_inputs: bool = False,
        outage_tolerance: float | None = OUTAGE_TOLERANCE,
    ):
        if max_in_flight < 1:
            raise ConfigError("max_in_flight must be >= 1")
        if outage_tolerance is not None and outage_tolerance < 0:
            raise ConfigError("outage_tolerance must be >= 0 or None")
        super().__init__(
            client,
            redact=client.redact,
            tolerance=float("inf") if outage_tolerance is None else outage_tolerance,
            max_in_flight=max_in_flight,
        )
        self._model = model
        self._inputs = inputs
        self._ordered = ordered
        self._shared = dict(shared or {})
        self._lock = JournalLock(journal) if journal is not None else None
        self._journal = Journal(journal, fsync=fsync) if journal is not None else None
        self._resume = ResumeState()
        if journal is not None and self._lock is not None:
            self._lock.acquire()
            try:
                self._resume = Journal.replay(journal)
                previous = self._resume.run
                found = changes(previous, model, self._shared) if previous is not None else []
                if found and not accept_changed_inputs:
                    raise JournalError(
                        f"{journal} records another batch: {'; '.join(found)}. Every input "
                        "would be new and paid again; pass --accept-changed-inputs to run it "
                        "anyway (the journal's jobs are still followed), or choose another --out"
                    )
            except BaseException:
                self._lock.release()
                raise
        self._download_to = Path(download_to) if download_to is not None else None
        self._max_downloads = max_downloads
        self._download_timeout = download_timeout
        self._resubmit_uncertain = resubmit_uncertain
        self._retry_failed = retry_failed
        self._stopping = False
        self._in_submit: Item | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._ids = Identities()
        self._unmatched = set(self._resume.submitted) | self._resume.uncertain

    # ----- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> BatchRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[BatchResult]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[BatchResult]:
        if self._started:
            raise RuntimeError("a BatchRunner can be iterated once")
        self._started = True
        if self._journal is not None:
            self._journal.open()
            self._record(
                Run(version=FORMAT_VERSION, model=self._model, shared=self._shared, at=_now_iso())
            )
        downloader = None
        if self._download_to is not None:
            downloader = Downloader(
                self._download_to,
                max_concurrent=self._max_downloads,
                file_timeout=self._download_timeout,
                proxy=self._client.proxy,
            )
        try:
            if downloader is not None:
                await downloader.__aenter__()
            self._tasks.append(asyncio.create_task(self._produce()))
            for _ in range(self._max_downloads if downloader is not None else 1):
                self._tasks.append(asyncio.create_task(self._finish_loop(downloader)))
            pending: dict[int, BatchResult | int] = {}
            next_seq = 0
            while True:
                got = await self._out.get()
                if got is None:
                    break
                if isinstance(got, BaseException):
                    raise got
                if not self._ordered or (not isinstance(got, int) and got.orphan):
                    if not isinstance(got, int):
                        yield self._deliver(got)
                    continue
                pending[got if isinstance(got, int) else got.index] = got
                while next_seq in pending:
                    ready = pending.pop(next_seq)
                    next_seq += 1
                    if not isinstance(ready, int):  # an int marks an input done before
                        yield self._deliver(ready)
            for index in sorted(pending):  # ordered: what is left after gaps
                ready = pending.pop(index)
                if not isinstance(ready, int):
                    yield self._deliver(ready)
        finally:
            await self.aclose()
            if downloader is not None:
                await downloader.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Stop every task of the runner, close the journal and release its lock (idempotent).

        A submit already on its way is let finish (bounded by ``SUBMIT_GRACE``) so that its
        request id is journaled: cancelling it mid-flight would leave it 'uncertain'. Jobs
        still followed stay journaled ``submitted``: a resume re-attaches them.
        """
        self._stopping = self._closing = True
        self._drained.set()
        tasks, self._tasks = self._tasks, []
        if tasks and self._in_submit is not None and not tasks[0].done():
            await asyncio.wait({tasks[0]}, timeout=SUBMIT_GRACE)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # already reported through the output queue
                logger.debug("batch task ended with an error", exc_info=True)
        if self._journal is not None:
            try:
                self._journal.close()
            except OSError as exc:
                self._halt("disk", exc)
        self._resume.close()
        # What identified the inputs is not needed once the run is over: give it back, as
        # the caller may now go through the inputs once more (results.jsonl).
        self._resume, self._ids = ResumeState(), Identities()
        if self._lock is not None:
            self._lock.release()

    def stop(self) -> None:
        """Stop submitting new inputs; jobs already submitted are still followed."""
        self._stopping = True

    async def cancel_queued(self) -> int:
        """Cancel on the server the live jobs that may still be queued.

        Each accepted cancel is journaled ``released``, so a resume submits that input again
        (a job cancelled while queued never ran and is not billed). Nothing is cancelled once
        the journal cannot be written: a cancel it could not record would lose the input.

        Returns:
            How many jobs were cancelled.
        """
        self.stop()
        cancelled = 0
        for item in list(self._live.values()):
            job = item.job
            if job is None or job.done() or job.phase not in (None, "queued"):
                continue
            if self._journal_failed:
                break
            if await job.cancel_quietly():
                cancelled += 1
                self._record(Released(id=item.id, request_id=job.request_id))
        return cancelled

    # ----- producing ------------------------------------------------------------------

    async def _items(self) -> AsyncIterator[BatchItem]:
        index = 0
        source = self._inputs
        if isinstance(source, AsyncIterable):
            async for value in source:
                yield _as_item(index, value)
                index += 1
        else:
            for value in source:
                yield _as_item(index, value)
                index += 1
                if index % 256 == 0:
                    await asyncio.sleep(0)  # a long synchronous source must not block the loop

    async def _produce(self) -> None:
        try:
            async for item in self._items():
                if self._stopping:
                    break
                self._in_submit = None
                self.counts["read"] += 1
                await self._start(item)
            if not self._stopping:
                self._adopt_orphans()
            while self._live and not self._closing:  # the jobs in flight end and are emitted
                self._drained.clear()
                await self._drained.wait()
            self._out.put_nowait(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # fatal for the whole batch: hand it to the consumer
            self._out.put_nowait(exc)

    async def _start(self, given: BatchItem) -> None:
        model_id, value, error = self._model, given.inputs, given.error
        if isinstance(value, ModelInput):
            model_id = type(value).model_id
            value = to_payload(value)
        if model_id is None:
            raise ConfigError("a model id is needed for inputs that are not typed Structs")
        inputs = paths_as_uris(value) if isinstance(value, Mapping) else {"_invalid": repr(value)}
        if error is None and not isinstance(value, Mapping):
            error = f"inputs must be a mapping, got {type(value).__name__}"
        item = Item(given.index, given.key, model_id, inputs)
        item.id = self._ids.of(model_id, inputs, given.key)
        if given.key is not None:
            first = self._ids.keys.setdefault(given.key, given.index)
            if first != given.index:
                error = f'duplicate key "{given.key}", first at input {first + 1}'
        self._unmatched.discard(item.id)
        prior = self._resume.status(item.id)
        if prior is not None and not self._redo(prior, error):
            self.counts["skipped"] += 1
            if self._ordered:
                self._out.put_nowait(item.index)  # lets ordered delivery move past this index
            return
        if error is not None:
            res = self._result(item, "invalid", error=error, kind="InputValidationError")
            self._emit(item, res)
            return
        await self._slots.acquire()
        self._live[item.id] = item
        if prior in ("succeeded", "download_failed"):
            # The job is done: only its files need checking or fetching.
            item.prior = self._resume.result(item.id)
            if item.prior is not None:
                self._completed.put_nowait(item)
                return
        rid = self._resume.submitted.get(item.id)
        if rid is not None:  # it exists: follow it, never pay for it twice
            self._attach(item, rid)
            return
        if item.id in self._resume.uncertain and not self._resubmit_uncertain:
            self._emit(item, self._uncertain(item))
            return
        await self._submit(item)

    def _redo(self, status: BatchStatus, error: str | None) -> bool:
        """Whether an input with a final result in the journal needs work in this run."""
        if status == "succeeded":
            return self._download_to is not None
        if status == "download_failed":
            return self._download_to is not None
        if status == "failed":
            return self._retry_failed
        if status == "invalid":
            return error is None  # it was fixed
        if status == "uncertain":
            return self._resubmit_uncertain
        return False

    def _uncertain(self, item: Item) -> BatchResult:
        return self._result(
            item,
            "uncertain",
            error="an earlier run sent this submit but never got its answer; the job may "
            "exist and be billed. Check before resubmitting (--resubmit-uncertain).",
            kind="SubmissionUncertainError",
        )

    def _adopt_orphans(self) -> None:
        """Follow the journaled jobs that match no input: paid for, so never abandoned."""
        for ident in sorted(self._unmatched):
            sent = self._resume.sent.get(ident)
            if sent is None:
                continue
            item = Item(sent.index, sent.key, sent.model, sent.input)
            item.id, item.orphan = ident, True
            rid = self._resume.submitted.get(ident)
            if rid is None:
                self._emit(item, self._uncertain(item))
                continue
            self._live[item.id] = item  # no slot: these jobs exist whatever the bound says
            self._attach(item, rid)
        self._unmatched.clear()

    async def _submit(self, item: Item) -> None:
        record = Submitting(
            id=item.id, index=item.index, key=item.key, model=item.model_id, input=item.inputs
        )
        outage_since: float | None = None
        attempt = 0
        while True:
            # Journaled when the request is about to leave (not while it waits for the
            # budget): a batch stopped before that point has sent nothing, owes no 'uncertain'.
            journaled = False

            def before_send() -> None:
                nonlocal journaled
                self._record(msgspec.structs.replace(record, at=_now_iso()), must=True)
                journaled = True

            item.submitted = time.monotonic()
            self._in_submit = item
            try:
                job = await self._client.submit(item.model_id, item.inputs, before_send=before_send)
            except SubmissionUncertainError as exc:
                self._emit(item, self._result(item, "uncertain", error=str(exc), kind=_kind(exc)))
                return
            except (InputValidationError, ConfigError) as exc:
                self._release(item, journaled)
                self._emit(item, self._result(item, "invalid", error=str(exc), kind=_kind(exc)))
                return
            except (TransportError, RateLimitError) as exc:
                # Provably not sent (else the client says 'uncertain'): safe to try again.
                self._release(item, journaled)
                now = time.monotonic()
                outage_since = outage_since or now
                if self._stopping or now - outage_since >= self._tolerance:
                    self._halt("outage", exc)
                    self._pending(item, exc)
                    return
                attempt += 1
                await asyncio.sleep(self.backoff(attempt, self._tolerance - (now - outage_since)))
                continue
            except APIStatusError as exc:
                self._release(item, journaled)  # a definite refusal: no job
                if is_account_error(exc):
                    self._halt("account", exc)
                    self._pending(item, exc)
                    return
                status: BatchStatus = "invalid" if exc.status_code in (400, 404, 422) else "failed"
                self._emit(item, self._result(item, status, error=str(exc), kind=_kind(exc)))
                return
            except OSError as exc:  # the journal could not be written: nothing was sent
                self._pending(item, exc)
                return
            break
        self._in_submit = None
        item.job = job
        self.counts["submitted"] += 1
        self._record(Submitted(id=item.id, request_id=job.request_id))
        self._follow(item)

    def _pending(self, item: Item, exc: BaseException) -> None:
        """The input was not submitted after all: a resume submits it."""
        self._emit(item, self._result(item, "pending", error=str(exc), kind=_kind(exc)))

    def _release(self, item: Item, journaled: bool) -> None:
        if journaled:
            self._record(Released(id=item.id))


def _as_item(index: int, value: Any) -> BatchItem:
    if isinstance(value, BatchItem):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return BatchItem(index=index, key=str(value[0]), inputs=value[1])
    return BatchItem(index=index, inputs=value)


def _kind(exc: BaseException) -> str:
    return type(exc).__name__
