"""The batch runner: many inputs in, one result per input out, resumable after a crash.

Shape: a producer walks the inputs (never all in memory) and submits under a bound of
``max_in_flight`` live jobs; each job's future, when it resolves, hands the job to a small
pool of finishers that download its outputs, journal its terminal record and yield it.
No task per job: the client's one poller follows them all.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ._download import DownloadedFile, Downloader, DownloadError, safe_stem
from ._exceptions import (
    APIStatusError,
    AuthenticationError,
    ConfigError,
    InputValidationError,
    JobCancelledError,
    JobFailedError,
    RunComfyError,
    SubmissionUncertainError,
    TransportError,
)
from ._jobs import Job, JobUpdate
from ._journal import Journal, ResumeState, input_id
from .models import ModelInput, to_payload

if TYPE_CHECKING:
    from ._client import AsyncClient

__all__ = ["BatchResult", "BatchRunner"]

logger = logging.getLogger("runcomfy_async")

SUBMIT_GRACE = 10.0
"""Seconds a stopping batch waits for a submit already on its way to be answered."""


class BatchResult(msgspec.Struct, kw_only=True, omit_defaults=False):
    """The outcome of one batch input: one line of results.jsonl.

    Attributes:
        index: the input's position in the input stream (0-based).
        key: the user's key for the input, if given.
        id: the input's identity in the journal (the key, or a hash of model, input, index).
        model_id: the model it ran on.
        input: the inputs as sent.
        request_id: the job's id, if a job was created.
        status: ``succeeded``, ``failed``, ``cancelled``, ``uncertain`` (the submit may have
            created a job we never heard of), ``invalid`` (nothing was sent) or
            ``download_failed`` (the job succeeded, an output could not be saved).
        urls: the output URLs.
        files: the downloaded outputs (path relative to the output folder, size, sha256).
        error: why it did not succeed, one line.
        error_kind: the error's class name.
        submitted_at, finished_at: ISO-8601 times (server's finish time when known).
        duration_s: how long the job ran on the server, when known.
        wait_s: from submit to the result in hand.
    """

    index: int
    key: str | None = None
    id: str
    model_id: str | None = None
    input: dict[str, Any] | None = None
    request_id: str | None = None
    status: str
    urls: list[str] = msgspec.field(default_factory=list)
    files: list[DownloadedFile] = msgspec.field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    wait_s: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the input succeeded (outputs downloaded, if downloads were asked for)."""
        return self.status == "succeeded"


class _Item:
    """One input on its way through the runner."""

    __slots__ = ("id", "index", "inputs", "job", "key", "model_id", "submitted")

    def __init__(self, index: int, key: str | None, model_id: str, inputs: dict[str, Any]):
        self.index = index
        self.key = key
        self.model_id = model_id
        self.inputs = inputs
        self.id = input_id(model_id, inputs, index, key)
        self.job: Job | None = None
        self.submitted = 0.0


def _stem(item: _Item) -> str:
    """The output file stem: the index, or the key.

    A key that had to be sanitized gets a short hash of itself, so 'cat/1' and 'cat_1'
    never share a file.
    """
    if item.key is None:
        return f"{item.index:06d}"
    stem = safe_stem(item.key)
    if stem != item.key:
        stem = f"{stem[:80]}-{hashlib.sha256(item.key.encode()).hexdigest()[:8]}"
    return stem


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class BatchRunner:
    """Run one model over many inputs; iterate it for a :class:`BatchResult` per input.

    Obtain one with :meth:`AsyncClient.map`. Inputs may be an iterable or async iterable of
    dicts or typed model Structs, or ``(key, inputs)`` pairs to key them; objects with
    ``index``, ``key``, ``inputs`` and ``error`` attributes (the CLI's input lines) pass
    through as they are, an ``error`` making the item ``invalid``.

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
        fsync: ``fsync`` the journal after every record.
        download_to: a folder to download every output into.
        resubmit_uncertain: on resume, submit again the inputs whose earlier submit may or
            may not have created a job (you may pay twice for those).
        max_downloads: concurrent downloads.
    """

    def __init__(
        self,
        client: AsyncClient,
        model: str | None,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int = 64,
        ordered: bool = False,
        journal: str | Path | None = None,
        fsync: bool = False,
        download_to: str | Path | None = None,
        resubmit_uncertain: bool = False,
        max_downloads: int = 8,
    ):
        if max_in_flight < 1:
            raise ConfigError("max_in_flight must be >= 1")
        self._client = client
        self._model = model
        self._inputs = inputs
        self._max = max_in_flight
        self._ordered = ordered
        self._journal = Journal(journal, fsync=fsync) if journal is not None else None
        self._resume = Journal.replay(journal) if journal is not None else ResumeState()
        self._download_to = Path(download_to) if download_to is not None else None
        self._max_downloads = max_downloads
        self._resubmit_uncertain = resubmit_uncertain
        self._slots = asyncio.Semaphore(max_in_flight)
        self._completed: asyncio.Queue[_Item] = asyncio.Queue()
        self._out: asyncio.Queue[BatchResult | BaseException | int | None] = asyncio.Queue()
        self._live: dict[str, _Item] = {}
        self._drained = asyncio.Event()
        self._stopping = False
        self._closing = False
        self._in_submit: _Item | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.failures: collections.Counter[str] = collections.Counter()
        """Inputs that did not succeed, by short reason (for summaries)."""
        self.counts: collections.Counter[str] = collections.Counter()
        """Live counters for progress displays: ``read``, ``skipped``, ``submitted``,
        ``queued``, ``running`` and one per terminal status."""

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
        downloader = (
            Downloader(self._download_to, max_concurrent=self._max_downloads)
            if self._download_to is not None
            else None
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
                if not self._ordered:
                    if isinstance(got, int):
                        continue
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
        """Stop every task of the runner and close the journal (idempotent).

        A submit already on its way is let finish (bounded by ``SUBMIT_GRACE``) so that its
        request id is journaled: cancelling it mid-flight would leave it 'uncertain'.
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
            self._journal.close()

    def stop(self) -> None:
        """Stop submitting new inputs; jobs already submitted are still followed."""
        self._stopping = True

    async def cancel_queued(self) -> int:
        """Cancel on the server the live jobs that may still be queued.

        Each accepted cancel is journaled ``released``, so a resume submits that input again
        (a job cancelled while queued never ran and is not billed).

        Returns:
            How many jobs were cancelled.
        """
        self.stop()
        cancelled = 0
        for item in list(self._live.values()):
            job = item.job
            if job is None or job.done() or job.phase not in (None, "queued"):
                continue
            if await job.cancel_quietly():
                cancelled += 1
                self._record({"e": "released", "id": item.id, "request_id": job.request_id})
        return cancelled

    # ----- producing ------------------------------------------------------------------

    async def _items(self) -> AsyncIterator[tuple[int, str | None, Any, str | None]]:
        index = 0
        source = self._inputs
        if isinstance(source, AsyncIterable):
            async for value in source:
                yield self._unpack(index, value)
                index += 1
        else:
            for value in source:
                yield self._unpack(index, value)
                index += 1
                if index % 256 == 0:
                    await asyncio.sleep(0)  # a long synchronous source must not block the loop

    @staticmethod
    def _unpack(index: int, value: Any) -> tuple[int, str | None, Any, str | None]:
        if hasattr(value, "inputs") and hasattr(value, "error") and hasattr(value, "index"):
            return value.index, value.key, value.inputs, value.error
        if isinstance(value, tuple) and len(value) == 2:
            return index, str(value[0]), value[1], None
        return index, None, value, None

    async def _produce(self) -> None:
        try:
            async for index, key, value, error in self._items():
                if self._stopping:
                    break
                self._in_submit = None
                self.counts["read"] += 1
                await self._start(index, key, value, error)
            while self._live and not self._closing:  # the jobs in flight end and are emitted
                self._drained.clear()
                await self._drained.wait()
            self._out.put_nowait(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # fatal for the whole batch: hand it to the consumer
            self._out.put_nowait(exc)

    async def _start(self, index: int, key: str | None, value: Any, error: str | None) -> None:
        model_id = self._model
        if isinstance(value, ModelInput):
            model_id = type(value).model_id
            value = to_payload(value)
        if model_id is None:
            raise ConfigError("a model id is needed for inputs that are not typed Structs")
        inputs = dict(value) if isinstance(value, Mapping) else {"_invalid": repr(value)}
        item = _Item(index, key, model_id, inputs)
        if error is None and not isinstance(value, Mapping):
            error = f"inputs must be a mapping, got {type(value).__name__}"
        if item.id in self._resume.done:
            self.counts["skipped"] += 1
            if self._ordered:
                self._out.put_nowait(index)  # lets ordered delivery move past this index
            return
        if error is not None:
            self._emit(item, "invalid", error=error, kind="InputValidationError")
            return
        await self._slots.acquire()
        self._live[item.id] = item
        rid = self._resume.submitted.get(item.id)
        if rid is not None:  # it exists: follow it, never pay for it twice
            item.job = self._client.job(rid, model_id)
            item.submitted = time.monotonic()
            self._follow(item)
            return
        if item.id in self._resume.uncertain and not self._resubmit_uncertain:
            self._emit(
                item,
                "uncertain",
                error="an earlier run sent this submit but never got its answer; the job may "
                "exist and be billed. Check before resubmitting (--resubmit-uncertain).",
                kind="SubmissionUncertainError",
            )
            return
        await self._submit(item)

    async def _submit(self, item: _Item) -> None:
        record = {"e": "submitting", "id": item.id, "index": item.index, "key": item.key}
        record.update(model=item.model_id, input=item.inputs)
        # Journaled when the request is about to leave (not while it waits for the budget):
        # a batch stopped before that point has sent nothing and owes no 'uncertain'.
        journaled = False

        def before_send() -> None:
            nonlocal journaled
            journaled = True
            self._record({**record, "at": _now_iso()})

        item.submitted = time.monotonic()
        self._in_submit = item
        try:
            job = await self._client.submit(item.model_id, item.inputs, before_send=before_send)
        except SubmissionUncertainError as exc:
            self._emit(item, "uncertain", error=str(exc), kind=type(exc).__name__)
            return
        except (InputValidationError, ConfigError) as exc:
            self._emit(item, "invalid", error=str(exc), kind=type(exc).__name__)
            return
        except (AuthenticationError, TransportError) as exc:
            # Every later submit would fail the same way; nothing was created for this one.
            if journaled:
                self._record({"e": "released", "id": item.id})
            self._live.pop(item.id, None)
            self._slots.release()
            raise exc
        except APIStatusError as exc:
            if journaled:
                self._record({"e": "released", "id": item.id})  # a definite refusal: no job
            status = "invalid" if exc.status_code in (400, 404, 422) else "failed"
            self._emit(item, status, error=str(exc), kind=type(exc).__name__)
            return
        self._in_submit = None
        item.job = job
        self.counts["submitted"] += 1
        self._record({"e": "submitted", "id": item.id, "request_id": job.request_id})
        self._follow(item)

    def _follow(self, item: _Item) -> None:
        job = item.job
        assert job is not None
        job.on_update(self._on_update)
        job.future().add_done_callback(lambda _f: self._completed.put_nowait(item))

    def _on_update(self, update: JobUpdate) -> None:
        # Progress counters only; the poller calls this on every change of phase.
        if update.phase == "queued":
            self.counts["queued"] += 1
        elif update.phase == "running":
            self.counts["running"] += 1

    # ----- finishing ------------------------------------------------------------------

    async def _finish_loop(self, downloader: Downloader | None) -> None:
        while True:
            item = await self._completed.get()
            try:
                await self._finish(item, downloader)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # a bug here must not hang the batch
                logger.exception("batch: finishing %s failed", item.id)
                self._emit(item, "failed", error=f"internal error: {exc}", kind=type(exc).__name__)

    async def _finish(self, item: _Item, downloader: Downloader | None) -> None:
        job = item.job
        assert job is not None
        try:
            result = job.future().result()
        except JobFailedError as exc:
            self._emit(item, "failed", error=str(exc), kind=type(exc).__name__, result=exc.result)
            return
        except JobCancelledError as exc:
            self._emit(item, "cancelled", error=str(exc), kind=type(exc).__name__)
            return
        except RunComfyError as exc:
            self._emit(item, "failed", error=str(exc), kind=type(exc).__name__)
            return
        files: list[DownloadedFile] = []
        if downloader is not None and result.urls:
            stem = _stem(item)
            try:
                files = await downloader.fetch_all(list(result.urls), stem=stem)
            except DownloadError as exc:
                self._emit(
                    item, "download_failed", error=str(exc), kind=type(exc).__name__, result=result
                )
                return
        self._emit(item, "succeeded", result=result, files=files)

    def _emit(
        self,
        item: _Item,
        status: str,
        *,
        error: str | None = None,
        kind: str | None = None,
        result: Any = None,
        files: list[DownloadedFile] | None = None,
    ) -> None:
        """Free the item's slot and queue its result for the consumer."""
        job = item.job
        res = BatchResult(
            index=item.index,
            key=item.key,
            id=item.id,
            model_id=item.model_id,
            input=item.inputs,
            request_id=job.request_id if job is not None else None,
            status=status,
            error=error,
            error_kind=kind,
            files=files or [],
        )
        if result is not None:
            res.urls = list(result.urls)
            res.submitted_at = result.created_at_raw
            res.finished_at = result.finished_at_raw
            created, finished = result.created_at, result.finished_at
            if created is not None and finished is not None:
                res.duration_s = round((finished - created).total_seconds(), 3)
        if item.submitted:
            res.wait_s = round(time.monotonic() - item.submitted, 3)
        self.counts[status] += 1
        if status != "succeeded":
            self.failures[f"{status}: {(error or kind or '')[:100]}"] += 1
        if self._live.pop(item.id, None) is not None:
            self._slots.release()
            self._drained.set()
        self._out.put_nowait(res)

    def _deliver(self, res: BatchResult) -> BatchResult:
        """Journal the terminal record as the result is handed over.

        Not before: a result the consumer never received (it stopped iterating) is then
        followed again on resume instead of being skipped unseen.
        """
        self._record({"e": "done", **msgspec.to_builtins(res)})
        return res

    def _record(self, record: Mapping[str, Any]) -> None:
        if self._journal is not None:
            self._journal.write(record)
