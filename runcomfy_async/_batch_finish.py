"""The batch's back half: following jobs to their end, downloading, journaling, emitting.

Only the server's own final answer ends a job (succeeded, failed, cancelled). When following a
job fails for the client's or the network's reasons (no connection, 5xx, refused credentials,
the poller giving up), the job is re-attached after a capped backoff, for up to the outage
tolerance; beyond it the input is reported ``submitted`` and stays so in the journal, and a
resume re-attaches it. Downloads are a state of their own: a job that succeeded keeps its
result when its files cannot be saved (``download_failed``), and a resume fetches them again.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import hashlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ._batch_types import BatchResult, file_stem
from ._download import DownloadedFile, Downloader, DownloadError
from ._exceptions import (
    APIStatusError,
    AuthenticationError,
    ClientClosedError,
    JobCancelledError,
    JobFailedError,
    RunComfyError,
)
from ._jobs import JobUpdate
from ._journal import Done, Journal, Record
from ._states import BatchStatus

if TYPE_CHECKING:
    from ._base_client import BaseClient
    from ._jobs import Job

__all__ = ["Finisher", "HaltReason", "Item", "is_account_error"]

logger = logging.getLogger("runcomfy_async")

HaltReason = Literal["account", "disk", "outage"]
"""Why a batch stopped submitting on its own: the account (balance, credentials), a full or
failing disk, or an outage longer than the tolerance."""

_BACKOFF_CAP = 30.0  # seconds between two attempts to reach the API, at most
_FINAL: frozenset[str] = frozenset(
    {"succeeded", "failed", "cancelled", "invalid", "uncertain", "download_failed"}
)
_UNSAFE_SCHEMES = ("file:", "javascript:", "data:", "vbscript:", "ftp:")


def is_account_error(exc: BaseException) -> bool:
    """Whether every later submit would fail the same way: no balance, or bad credentials."""
    if isinstance(exc, AuthenticationError):
        return True
    if isinstance(exc, APIStatusError):
        return exc.status_code == 402 or exc.error_code == 400002
    return False


class Item:
    """One input on its way through the runner."""

    __slots__ = (
        "id",
        "index",
        "inputs",
        "job",
        "key",
        "model_id",
        "orphan",
        "prior",
        "submitted",
        "trouble",
        "trouble_since",
    )

    def __init__(self, index: int, key: str | None, model_id: str, inputs: dict[str, Any]):
        self.index = index
        self.key = key
        self.model_id = model_id
        self.inputs = inputs
        self.id = ""
        self.job: Job | None = None
        self.submitted = 0.0
        self.orphan = False
        self.prior: BatchResult | None = None  # a final result from the journal, to re-check
        self.trouble = 0  # failed attempts to follow the job in a row
        self.trouble_since: float | None = None


class Finisher:
    """Following, finishing and reporting, shared by :class:`~runcomfy_async.BatchRunner`."""

    _journal: Journal | None
    _download_to: Path | None

    def __init__(
        self,
        client: BaseClient,
        *,
        redact: Callable[[str], str],
        tolerance: float,
        max_in_flight: int,
    ):
        self._client = client
        self._redact = redact
        self._tolerance = tolerance
        self._slots = asyncio.Semaphore(max_in_flight)
        self._drained = asyncio.Event()
        self._completed: asyncio.Queue[Item] = asyncio.Queue()
        self._out: asyncio.Queue[BatchResult | BaseException | int | None] = asyncio.Queue()
        self._live: dict[str, Item] = {}
        self._closing = False
        self._stopping = False
        self._journal_failed = False
        self._quiet: set[str] = set()
        self.halted: BaseException | None = None
        """The error that stopped new submits (see :attr:`halt_reason`), or ``None``."""
        self.halt_reason: HaltReason | None = None
        """Why new submits stopped: ``account``, ``disk`` or ``outage``; ``None`` if not."""
        self.failures: collections.Counter[str] = collections.Counter()
        """Inputs that did not succeed, by status and error (the job's id left out, so that
        identical errors group)."""
        self.counts: collections.Counter[str] = collections.Counter()
        """Live counters for progress displays: ``read``, ``skipped``, ``submitted``,
        ``queued``, ``running`` and one per batch status. ``unchanged`` counts the skipped
        inputs that are handed over all the same (done before, their files checked)."""

    def _halt(self, reason: HaltReason, exc: BaseException) -> None:
        """Stop new submits for good; jobs already submitted are still followed."""
        self._stopping = True
        if self.halted is None:
            self.halted, self.halt_reason = exc, reason
            logger.warning("batch: no more submits (%s): %s", reason, exc)

    @staticmethod
    def backoff(attempt: int, left: float) -> float:
        """Seconds to wait before trying to reach the API again (capped, jittered, <= left)."""
        delay = min(_BACKOFF_CAP, 0.25 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
        return float(max(0.01, min(delay, left)))

    # ----- following ------------------------------------------------------------------

    def _attach(self, item: Item, request_id: str) -> None:
        """Follow a job that exists (journaled, or being re-attached after trouble)."""
        try:
            item.job = self._client.job(request_id, item.model_id)
        except RunComfyError as exc:  # the client is closing
            self._left(item, exc)
            return
        if not item.submitted:
            item.submitted = time.monotonic()
        self._follow(item)

    def _follow(self, item: Item) -> None:
        job = item.job
        assert job is not None
        job.on_update(lambda update: self._on_update(item, update))
        job.add_done_callback(lambda _f: self._completed.put_nowait(item))

    def _on_update(self, item: Item, update: JobUpdate) -> None:
        # The poller reached the server about this job: any trouble is over.
        item.trouble, item.trouble_since = 0, None
        if update.phase == "queued":
            self.counts["queued"] += 1
        elif update.phase == "running":
            self.counts["running"] += 1

    def _trouble(self, item: Item, exc: BaseException) -> None:
        """Following failed for the client's or the network's reasons: try again later."""
        if isinstance(exc, AuthenticationError):
            self._halt("account", exc)
        now = time.monotonic()
        since = item.trouble_since = item.trouble_since or now
        if self._closing or isinstance(exc, ClientClosedError) or now - since >= self._tolerance:
            self._left(item, exc)
            return
        item.trouble += 1
        delay = self.backoff(item.trouble, self._tolerance - (now - since))
        logger.info("following %s failed (%s); again in %.1f s", item.id, exc, delay)
        asyncio.get_running_loop().call_later(delay, self._reattach, item)

    def _reattach(self, item: Item) -> None:
        if self._closing or item.job is None:
            return
        self._attach(item, item.job.request_id)

    def _left(self, item: Item, exc: BaseException) -> None:
        """Give up following for this run: the job stays journaled ``submitted``."""
        reason = f"not followed to its end ({exc}); --resume follows it again"
        self._emit(item, self._result(item, "submitted", error=reason, kind=type(exc).__name__))

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
                self._left(item, exc)

    async def _finish(self, item: Item, downloader: Downloader | None) -> None:
        prior = item.prior
        if prior is not None:  # done in an earlier run: check or fetch its files
            await self._refetch(item, prior, downloader)
            return
        job = item.job
        assert job is not None
        try:
            result = job.future().result()
        except JobFailedError as exc:
            res = self._result(item, "failed", error=str(exc), kind="JobFailedError")
            self._emit(item, _with_times(res, exc.result))
            return
        except JobCancelledError as exc:
            self._emit(item, self._result(item, "cancelled", error=str(exc), kind=_kind(exc)))
            return
        except (RunComfyError, OSError) as exc:  # not the server's final answer
            self._trouble(item, exc)
            return
        res = _with_times(self._result(item, "succeeded"), result)
        res.urls = [self._redact(url) for url in result.urls]
        unsafe = _unsafe_urls(result.output.to_dict() if result.output is not None else None)
        if unsafe or res.urls != list(result.urls):
            # file:, javascript: … are never fetched; nor is a URL holding the API token,
            # which would hand the token to the output host.
            shown = self._redact(unsafe[0])[:100] if unsafe else "one holds the API token"
            res.status, res.error_kind = "download_failed", "DownloadError"
            res.error = f"an output URL is not fetched: {shown}"
            self._emit(item, res)
            return
        await self._download(item, res, list(result.urls), downloader)

    async def _refetch(self, item: Item, prior: BatchResult, dl: Downloader | None) -> None:
        res = msgspec.structs.replace(prior, index=item.index, key=item.key, orphan=False)
        if (
            prior.status == "succeeded"
            and dl is not None
            and len(prior.files) == len(prior.urls)
            and await asyncio.to_thread(_intact, dl.out_dir, prior.files)
        ):
            item.prior = None
            self.counts["skipped"] += 1
            self.counts["unchanged"] += 1  # skipped, yet handed over (progress counts it once)
            self._emit(item, res, unchanged=True)
            return
        res.status, res.error, res.error_kind, res.files = "succeeded", None, None, []
        await self._download(item, res, list(prior.urls), dl)

    async def _download(
        self, item: Item, res: BatchResult, urls: list[str], downloader: Downloader | None
    ) -> None:
        if downloader is not None and urls:
            try:
                res.files = [
                    _redacted(f, self._redact)
                    for f in await downloader.fetch_all(urls, stem=_stem(item))
                ]
            except DownloadError as exc:
                cause = exc.__cause__
                if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._halt("disk", cause)
                res.status, res.error, res.error_kind = "download_failed", str(exc), _kind(exc)
        self._emit(item, res)

    # ----- reporting ------------------------------------------------------------------

    def _result(
        self, item: Item, status: BatchStatus, *, error: str | None = None, kind: str | None = None
    ) -> BatchResult:
        job = item.job
        res = BatchResult(
            index=item.index,
            key=item.key,
            id=item.id,
            model_id=item.model_id,
            input=item.inputs,
            request_id=job.request_id if job is not None else None,
            status=status,
            error=self._redact(error) if error is not None else None,
            error_kind=kind,
            orphan=item.orphan,
        )
        if item.submitted:
            res.wait_s = round(time.monotonic() - item.submitted, 3)
        return res

    def _emit(self, item: Item, res: BatchResult, *, unchanged: bool = False) -> None:
        """Free the item's slot and queue its result for the consumer."""
        if not unchanged:
            self.counts[res.status] += 1
            if res.status != "succeeded":
                error = res.error or res.error_kind or ""
                if res.request_id:
                    error = error.replace(res.request_id, "<id>")
                self.failures[f"{res.status}: {error[:100]}"] += 1
        if self._live.pop(item.id, None) is not None:
            if not item.orphan:
                self._slots.release()
            self._drained.set()
        if unchanged:
            self._quiet.add(res.id)  # already in the journal as it is
        self._out.put_nowait(res)

    def _deliver(self, res: BatchResult) -> BatchResult:
        """Journal a final result as it is handed over.

        Not before: a result the consumer never received (it stopped iterating) is then
        followed again on resume instead of being skipped unseen. ``pending`` and
        ``submitted`` are not final: the journal keeps what it had for them.
        """
        if res.id in self._quiet:
            self._quiet.discard(res.id)
        elif res.status in _FINAL:
            self._record(Done(id=res.id, result=res))
        return res

    def _record(self, record: Record, *, must: bool = False) -> None:
        """Append to the journal; a write error stops new submits (and is raised if ``must``)."""
        if self._journal is None:
            return
        try:
            self._journal.write(record)
        except OSError as exc:
            self._journal_failed = True
            self._halt("disk", exc)
            if must:
                raise


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


def _with_times(res: BatchResult, result: Any) -> BatchResult:
    if result is not None:
        res.cost = result.cost  # reported with the result: failed jobs may cost too
        res.submitted_at = result.created_at_raw
        res.finished_at = result.finished_at_raw
        created, finished = result.created_at, result.finished_at
        if created is not None and finished is not None:
            res.duration_s = round((finished - created).total_seconds(), 3)
    return res


def _stem(item: Item) -> str:
    """The input's file stem; a job whose input is gone gets its own (its line may be reused)."""
    stem = file_stem(item.index, item.key)
    if item.orphan:
        stem = f"orphan-{stem}-{hashlib.sha256(item.id.encode()).hexdigest()[:8]}"
    return stem


def _unsafe_urls(value: Any) -> list[str]:
    """Strings in an output that point somewhere the downloader never goes (``file:`` …)."""
    found: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if node.strip().lower().startswith(_UNSAFE_SCHEMES):
                found.append(node)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return found


def _redacted(saved: DownloadedFile, redact: Callable[[str], str]) -> DownloadedFile:
    url = redact(saved.url)
    if url == saved.url:
        return saved
    return DownloadedFile(
        url=url,
        path=saved.path,
        bytes=saved.bytes,
        sha256=saved.sha256,
        content_type=saved.content_type,
    )


def _intact(folder: Path, files: list[DownloadedFile]) -> bool:
    """Whether every file is present with its recorded sha256 (runs in a thread)."""
    for saved in files:
        digest = hashlib.sha256()
        try:
            with open(folder / saved.path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return False
        if digest.hexdigest() != saved.sha256:
            return False
    return True
